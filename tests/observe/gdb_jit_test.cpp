// GdbJit and ElfImage: the descriptor list holds and forgets entries (and the registration
// hook is called for each), the image parses as ELF (own parser and readelf).
#include "observe/gdb_jit.h"

#include <elf.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "arch/arch.h"
#include "elf_machine.h"
#include "emulation.h"
#include "fork_util.h"
#include "observe/elf_image.h"

using patchcall::observe::CodeEvent;
using patchcall::observe::CodeRange;
using patchcall::observe::ElfImage;
using patchcall::observe::GdbJit;

namespace {

std::vector<const jit_code_entry*> descriptorList() {
  std::vector<const jit_code_entry*> out;
  const jit_code_entry* prev = nullptr;
  for (const jit_code_entry* e = __jit_debug_descriptor.first_entry; e != nullptr; e = e->next_entry) {
    EXPECT_EQ(e->prev_entry, prev);  // doubly linked, consistently
    out.push_back(e);
    prev = e;
  }
  return out;
}

struct ParsedElf {
  Elf64_Ehdr header{};
  std::map<std::string, Elf64_Shdr> sections;
  std::map<std::string, Elf64_Sym> symbols;
};

// Reads the section table and the symbols of an image, checking offsets stay in bounds.
ParsedElf parse(const uint8_t* p, size_t size) {
  ParsedElf out;
  EXPECT_GE(size, sizeof(Elf64_Ehdr));
  std::memcpy(&out.header, p, sizeof out.header);
  const Elf64_Ehdr& h = out.header;
  EXPECT_LE(h.e_shoff + h.e_shnum * sizeof(Elf64_Shdr), size);
  std::vector<Elf64_Shdr> sh(h.e_shnum);
  std::memcpy(sh.data(), p + h.e_shoff, h.e_shnum * sizeof(Elf64_Shdr));
  const char* shstr = reinterpret_cast<const char*>(p + sh[h.e_shstrndx].sh_offset);
  for (const Elf64_Shdr& s : sh) {
    if (s.sh_type != SHT_NOBITS) {
      EXPECT_LE(s.sh_offset + s.sh_size, size);
    }
    out.sections[shstr + s.sh_name] = s;
  }
  const Elf64_Shdr& symtab = out.sections[".symtab"];
  const char* str = reinterpret_cast<const char*>(p + sh[symtab.sh_link].sh_offset);
  for (size_t i = 1; i < symtab.sh_size / sizeof(Elf64_Sym); ++i) {
    Elf64_Sym s;
    std::memcpy(&s, p + symtab.sh_offset + i * sizeof s, sizeof s);
    out.symbols[str + s.st_name] = s;
  }
  return out;
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (f == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

}  // namespace

TEST(GdbJit, DescriptorListHoldsAndForgetsEntries) {
  EXPECT_EQ(__jit_debug_descriptor.version, 1u);
  const size_t base = descriptorList().size();
  GdbJit jit;
  auto a = jit.add({0x7f0000100000, 64, "blob_a", nullptr});
  auto b = jit.add({0x7f0000200000, 64, "blob_b", nullptr});
  ASSERT_TRUE(a.isOk() && b.isOk());
  EXPECT_NE(*a, *b);
  std::vector<const jit_code_entry*> list = descriptorList();
  ASSERT_EQ(list.size(), base + 2);
  EXPECT_EQ(__jit_debug_descriptor.action_flag, 0u);  // JIT_NOACTION between calls
  for (const jit_code_entry* e : {list[0], list[1]}) {  // newest first
    const ParsedElf elf = parse(reinterpret_cast<const uint8_t*>(e->symfile_addr), e->symfile_size);
    EXPECT_EQ(elf.symbols.size(), 1u);
  }
  EXPECT_EQ(parse(reinterpret_cast<const uint8_t*>(list[0]->symfile_addr), list[0]->symfile_size)
                .symbols.count("blob_b"), 1u);

  ASSERT_TRUE(jit.remove(*b).isOk());
  list = descriptorList();
  ASSERT_EQ(list.size(), base + 1);
  EXPECT_EQ(parse(reinterpret_cast<const uint8_t*>(list[0]->symfile_addr), list[0]->symfile_size)
                .symbols.count("blob_a"), 1u);
  EXPECT_EQ(jit.remove(*b).code(), patchcall::Error::kInvalidArgument);  // twice: refused
  {
    GdbJit other;  // a second Runtime's GdbJit shares the process-wide list
    ASSERT_TRUE(other.add({0x7f0000300000, 16, "other", nullptr}).isOk());
    EXPECT_EQ(descriptorList().size(), base + 2);
  }
  EXPECT_EQ(descriptorList().size(), base + 1);  // its destructor unregistered its entry
  ASSERT_TRUE(jit.remove(*a).isOk());
  EXPECT_EQ(descriptorList().size(), base);
}

TEST(GdbJit, RangesOutsideTheBlobAreRefused) {
  GdbJit jit;
  const CodeRange outside[] = {{0x2000, 16, "f"}};
  EXPECT_EQ(jit.add({0x1000, 64, "blob", nullptr}, outside).code(), patchcall::Error::kInvalidArgument);
  const CodeRange tail[] = {{0x1030, 0x20, "g"}};  // starts inside, ends past the blob
  EXPECT_EQ(jit.add({0x1000, 64, "blob", nullptr}, tail).code(), patchcall::Error::kInvalidArgument);
  EXPECT_EQ(jit.size(), 0u);
}

TEST(ElfImage, SectionsAndSymbolsParse) {
  const uintptr_t base = 0x7f0000400000;
  const CodeRange ranges[] = {{base, 0x20, "fib"}, {base + 0x20, 0x30, "fib_slow_path"}};
  const patchcall::arch::FrameCfiRange cfi[] = {{base, 0x20, true}};
  const std::vector<uint8_t> eh = patchcall::arch::buildFramePointerEhFrame(cfi);
  auto image = ElfImage::build({base, 0x50, "blob", nullptr}, ranges, eh);
  ASSERT_TRUE(image.isOk());
  const ParsedElf elf = parse(image->bytes().data(), image->bytes().size());
  EXPECT_EQ(std::memcmp(elf.header.e_ident, ELFMAG, SELFMAG), 0);
  EXPECT_EQ(elf.header.e_ident[EI_CLASS], ELFCLASS64);
  EXPECT_EQ(elf.header.e_machine, observe_test::kElfMachine);
  const Elf64_Shdr& text = elf.sections.at(".text");
  EXPECT_EQ(text.sh_type, static_cast<uint32_t>(SHT_NOBITS));
  EXPECT_EQ(text.sh_addr, base);
  EXPECT_EQ(text.sh_size, 0x50u);
  EXPECT_EQ(text.sh_flags, static_cast<uint64_t>(SHF_ALLOC | SHF_EXECINSTR));
  const Elf64_Shdr& ehs = elf.sections.at(".eh_frame");
  EXPECT_EQ(ehs.sh_size, eh.size());
  EXPECT_EQ(std::memcmp(image->bytes().data() + ehs.sh_offset, eh.data(), eh.size()), 0);
  EXPECT_EQ(ehs.sh_addr, reinterpret_cast<uintptr_t>(image->bytes().data()) + ehs.sh_offset);
  ASSERT_EQ(elf.symbols.size(), 2u);
  const Elf64_Sym& fib = elf.symbols.at("fib");
  EXPECT_EQ(fib.st_value, base);
  EXPECT_EQ(fib.st_size, 0x20u);
  EXPECT_EQ(ELF64_ST_TYPE(fib.st_info), STT_FUNC);
  EXPECT_EQ(elf.symbols.at("fib_slow_path").st_value, base + 0x20);
}

#ifdef PATCHCALL_READELF
// readelf, an independent ELF and DWARF reader, accepts the image: no warnings, the symbols,
// and the CFA rules the frame layout promises (frame_cfi.h).
TEST(ElfImage, ReadelfAcceptsImageSymbolsAndCfi) {
  const uintptr_t base = 0x7f0000500000;
  const CodeRange ranges[] = {{base, 0x40, "tinyvm_fib"}};
  const patchcall::arch::FrameCfiRange cfi[] = {{base, 0x40, true}};
  auto image = ElfImage::build({base, 0x40, "blob", nullptr}, ranges,
                               patchcall::arch::buildFramePointerEhFrame(cfi));
  ASSERT_TRUE(image.isOk());
  const std::string path = "/tmp/patchcall-observe-image-" + std::to_string(getpid()) + ".o";
  {
    std::ofstream f(path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(image->bytes().data()), static_cast<long>(image->bytes().size()));
  }
  const std::string all = run(std::string(PATCHCALL_READELF) + " -a -W " + path + " 2>&1");
  const std::string frames = run(std::string(PATCHCALL_READELF) + " -wF -W " + path + " 2>&1");
  std::remove(path.c_str());
  EXPECT_EQ(all.find("Warning"), std::string::npos) << all;
  EXPECT_EQ(all.find("Error"), std::string::npos) << all;
  EXPECT_NE(all.find(observe_test::kReadelfMachine), std::string::npos) << all;
  EXPECT_NE(all.find("NOBITS          00007f0000500000"), std::string::npos) << all;
  EXPECT_NE(all.find("00007f0000500000    64 FUNC    GLOBAL DEFAULT    1 tinyvm_fib"), std::string::npos) << all;
  // readelf -wF: one row per location (the host ISA's rows: elf_machine.h).
  for (const char* row : observe_test::kReadelfCfiRows) EXPECT_NE(frames.find(row), std::string::npos) << row << "\n" << frames;
}
#endif

// A fork() while another thread changes gdb's descriptor list: patchcall's atfork handlers
// (registered with the first GdbJit) hold the process-wide mutex across it, so every child
// finds the list whole and the mutex unlocked. Without the hold, a child forked inside the
// other thread's add or remove finds a half-linked list or a pending action (or, where the
// mutex is not on the wiped fork page, hangs on its first add: the alarm ends it).
TEST(GdbJit, ForkWhileAnotherThreadRegistersCode) {
  PATCHCALL_SKIP_IF_EMULATED("a thread runs while the test forks");
#if defined(__SANITIZE_ADDRESS__)
  // Seen in CI's ASan build: a child hung until its alarm. GCC 12's ASan allocator holds no
  // lock across fork(), so a child forked while the other thread allocates can inherit it held.
  GTEST_SKIP() << "ASan's allocator is not fork-safe against a thread that allocates meanwhile";
#endif
  GdbJit jit;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> rounds{0};
  std::thread churn([&] {
    GdbJit other;
    while (!stop.load()) {
      auto h = other.add({0x7f0000800000, 16, "churn", nullptr});
      if (h.isOk()) (void)other.remove(*h);
      rounds.fetch_add(1);
    }
  });
  for (int i = 0; i < 1000; ++i) {  // a mutation that drops the hold is caught in ~200 forks
    for (uint64_t before = rounds.load(); rounds.load() == before;) std::this_thread::yield();
    std::string how = patchcall::test::runInChild([] {
      alarm(5);
      const jit_descriptor& d = __jit_debug_descriptor;
      CHILD_CHECK(d.action_flag == 0, "an action was half done: flag %u", static_cast<unsigned>(d.action_flag));
      for (const jit_code_entry* e = d.first_entry; e != nullptr; e = e->next_entry) {
        CHILD_CHECK(e->prev_entry == nullptr ? e == d.first_entry : e->prev_entry->next_entry == e,
                    "the list is half linked at %p", static_cast<const void*>(e));
      }
      GdbJit mine;
      auto h = mine.add({0x7f0000600000, 16, "in_child", nullptr});
      CHILD_CHECK(h.isOk(), "add in the child: %s", h.status().toString().c_str());
      CHILD_CHECK(mine.remove(*h).isOk(), "remove in the child");
      return 0;
    });
    if (how != "exit 0") {
      ADD_FAILURE() << "fork " << i << ": the child ended with " << how
                    << " (forked inside the other thread's add or remove: do the atfork handlers hold gdb's descriptor mutex?)";
      break;
    }
  }
  stop = true;
  churn.join();
  auto h = jit.add({0x7f0000700000, 16, "in_parent", nullptr});
  ASSERT_TRUE(h.isOk());
  EXPECT_TRUE(jit.remove(*h).isOk());
}
