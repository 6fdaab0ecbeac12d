// The C API's names, frame layout and walks: patchcall_code_install_with installs a named
// blob with ranges and a checked frame layout, and the walks list keys, sites and blobs
// with their names (as the C++ snapshots do).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "patchcall/patchcall.h"
#include "site_code.h"

namespace {

extern "C" __attribute__((noinline)) void capiNamesTarget(int) {}

using observe_test::kSiteOffset;
const std::vector<uint8_t>& kCode = observe_test::kSiteCode;

struct Seen {
  std::vector<std::string> keys, blobs, ranges;
  std::vector<int> layouts;
  size_t sites = 0;
};

}  // namespace

TEST(CApiNames, InstallWithNamesAndWalk) {
  patchcall_runtime* rt = nullptr;
  ASSERT_EQ(patchcall_runtime_create(nullptr, &rt), PATCHCALL_OK);
  patchcall_key key = 0;
  ASSERT_EQ(patchcall_key_create(rt, reinterpret_cast<const void*>(&capiNamesTarget), "c_key", &key), PATCHCALL_OK);
  patchcall_site_spec site{kSiteOffset, key, PATCHCALL_SITE_DIRECT};
  patchcall_named_range range{0, static_cast<uint32_t>(kCode.size()), "c_range"};
  patchcall_code_info info;
  patchcall_code_info_init(&info);
  info.name = "c_blob";
  info.ranges = &range;
  info.range_count = 1;
  info.frame_layout = PATCHCALL_FRAME_POINTER;
  patchcall_blob blob{};
  ASSERT_EQ(patchcall_code_install_with(rt, kCode.data(), kCode.size(), &site, 1, &info, &blob), PATCHCALL_OK)
      << patchcall_last_error_message();

  // A layout the bytes do not follow, a bad struct_size: refused.
  std::vector<uint8_t> bad = observe_test::siteCodeWithNopAt(0);
  patchcall_blob refused{};
  EXPECT_EQ(patchcall_code_install_with(rt, bad.data(), bad.size(), nullptr, 0, &info, &refused), PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_code_info old = info;
  old.struct_size = 8;
  EXPECT_EQ(patchcall_code_install_with(rt, kCode.data(), kCode.size(), nullptr, 0, &old, &refused),
            PATCHCALL_E_INVALID_ARGUMENT);

  Seen seen;
  ASSERT_EQ(patchcall_keys_each(
                rt,
                [](void* user, const patchcall_key_info* k) {
                  static_cast<Seen*>(user)->keys.push_back(k->name);
                  return 0;
                },
                &seen),
            PATCHCALL_OK);
  ASSERT_EQ(patchcall_sites_each(
                rt,
                [](void* user, const patchcall_site_info*) {
                  ++static_cast<Seen*>(user)->sites;
                  return 0;
                },
                &seen),
            PATCHCALL_OK);
  ASSERT_EQ(patchcall_blobs_each(
                rt,
                [](void* user, const patchcall_blob_info* b) {
                  Seen& s = *static_cast<Seen*>(user);
                  s.blobs.push_back(b->name);
                  s.layouts.push_back(b->frame_layout);
                  for (size_t i = 0; i < b->range_count; ++i) s.ranges.push_back(b->ranges[i].name);
                  return 0;
                },
                &seen),
            PATCHCALL_OK);
  EXPECT_EQ(seen.keys, std::vector<std::string>{"c_key"});
  EXPECT_EQ(seen.sites, 1u);
  EXPECT_EQ(seen.blobs, std::vector<std::string>{"c_blob"});
  EXPECT_EQ(seen.ranges, std::vector<std::string>{"c_range"});
  EXPECT_EQ(seen.layouts, std::vector<int>{PATCHCALL_FRAME_POINTER});

  // A nonzero return stops the walk and is what the walk returns.
  EXPECT_EQ(patchcall_keys_each(rt, [](void*, const patchcall_key_info*) { return 42; }, nullptr), 42);
  EXPECT_EQ(patchcall_keys_each(rt, nullptr, nullptr), PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_runtime_destroy(rt);
}

TEST(CApiNames, OptionsTurnThePerfMapOn) {
  patchcall_options o;
  patchcall_options_init(&o);
  EXPECT_EQ(o.perf_map, 0);
  EXPECT_EQ(o.gdb_jit, PATCHCALL_GDB_JIT_DESCRIBED);
  o.perf_map = 1;
  o.gdb_jit = 7;
  patchcall_runtime* rt = nullptr;
  EXPECT_EQ(patchcall_runtime_create(&o, &rt), PATCHCALL_E_INVALID_ARGUMENT);
  o.gdb_jit = PATCHCALL_GDB_JIT_OFF;
  ASSERT_EQ(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_code_info info;
  patchcall_code_info_init(&info);
  info.name = "c_perf_named";
  patchcall_blob blob{};
  ASSERT_EQ(patchcall_code_install_with(rt, kCode.data(), kCode.size(), nullptr, 0, &info, &blob), PATCHCALL_OK);
  const std::string path = "/tmp/perf-" + std::to_string(getpid()) + ".map";
  FILE* f = std::fopen(path.c_str(), "r");
  ASSERT_NE(f, nullptr);
  char line[256];
  bool found = false;
  while (std::fgets(line, sizeof line, f) != nullptr) found |= std::string(line).find("c_perf_named") != std::string::npos;
  std::fclose(f);
  EXPECT_TRUE(found);
  patchcall_runtime_destroy(rt);
  std::remove(path.c_str());
}
