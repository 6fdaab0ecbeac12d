// patchcall-stress — updater loop: pick a batch, publish `begin`, update, publish `end` (for a
// deferred update: after the publish that covers it).
#include "updater.h"

#include <algorithm>
#include <chrono>
#include <random>

namespace stress {

Updaters::Updaters(patchcall::Runtime& rt, const std::vector<patchcall::Key>& keys, KeyCells* cells,
                   TargetSource& targets)
    : rt_(rt), keys_(keys), cells_(cells), targets_(targets) {}

Updaters::~Updaters() { stop(); }

void Updaters::start(std::vector<UpdaterConfig> configs) {
  stats_ = std::vector<UpdaterStats>(configs.size());
  for (size_t i = 0; i < configs.size(); ++i) {
    stats_[i].form = configs[i].form;
    stats_[i].latencyNs.reserve(1 << 20);
    threads_.emplace_back([this, i, c = std::move(configs[i])]() mutable { run(i, std::move(c)); });
  }
}

void Updaters::stop() {
  stop_.store(true);
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

uint64_t Updaters::updates() const {
  uint64_t n = 0;
  for (const UpdaterStats& s : stats_) n += s.updates.load(std::memory_order_relaxed);
  return n;
}

void Updaters::run(size_t index, UpdaterConfig c) {
  using Clock = std::chrono::steady_clock;
  UpdaterStats& st = stats_[index];
  std::mt19937_64 rng(c.seed);
  // Keys are visited in a shuffled order, reshuffled every round: every key is updated
  // equally often and a key comes back only after all others (the toggle's grace-period
  // rule then rarely has to wait), yet the order is not a fixed pattern.
  std::vector<uint32_t> order = c.keys;
  std::shuffle(order.begin(), order.end(), rng);
  size_t cursor = 0;
  size_t batch = std::min<size_t>(static_cast<size_t>(c.batch), order.size());
  std::vector<uint32_t> version(keys_.size(), 0);
  std::vector<uint32_t> batchKeys, batchVersions;
  std::vector<const void*> targets;
  std::vector<patchcall::KeyUpdate> updates;
  auto fail = [&](std::string msg) {
    st.error = std::move(msg);
    failed_.store(true);
  };
  // Deferred updates whose `end` waits for a covering publish: (key, version).
  std::vector<std::pair<uint32_t, uint32_t>> unpublished;
  int deferredBatches = 0;
  auto storeEnds = [&] {
    for (auto [k, v] : unpublished) cells_[k].end.store(tag(k, v), std::memory_order_release);
    unpublished.clear();
    deferredBatches = 0;
  };
  const patchcall::UpdateOptions deferred{.strict = false, .deadline = std::nullopt,
                                          .publish = patchcall::Publish::kDeferred};
  auto begin = Clock::now();
  uint64_t done = 0;
  while (!stop_.load(std::memory_order_relaxed)) {
    if (c.rate > 0) {  // pace: the next batch is due when `done` updates fit the rate
      auto due = begin + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(done / c.rate));
      while (Clock::now() < due && !stop_.load(std::memory_order_relaxed)) {
        std::this_thread::sleep_for(std::min<Clock::duration>(due - Clock::now(), std::chrono::milliseconds(5)));
      }
      if (stop_.load(std::memory_order_relaxed)) break;
    }
    batchKeys.clear();
    batchVersions.clear();
    // A batch never holds a key twice: it is `batch` consecutive entries of one round's
    // order (a round's tail is skipped rather than wrapped into the next round).
    if (cursor + batch > order.size()) {
      std::shuffle(order.begin(), order.end(), rng);
      cursor = 0;
    }
    for (size_t i = 0; i < batch; ++i) {
      uint32_t k = order[cursor++];
      batchKeys.push_back(k);
      batchVersions.push_back(version[k] + 1);
    }
    std::string err;
    if (!targets_.prepare(batchKeys.data(), batchVersions.data(), batch, &targets, &err)) return fail(err);
    updates.clear();
    for (size_t i = 0; i < batch; ++i) {
      cells_[batchKeys[i]].begin.store(tag(batchKeys[i], batchVersions[i]), std::memory_order_seq_cst);
      updates.push_back({keys_[batchKeys[i]], targets[i]});
    }
    targets_.publish(batchKeys.data(), batchVersions.data(), batch);
    // `begin` and the pool cells are visible before any code write of the update (versions.h,
    // upper bound): on aarch64 a release or seq_cst store does not order later stores.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    bool deferThis = c.publish == PublishChoice::kDeferred || (c.publish == PublishChoice::kMixed && (rng() & 1) != 0);
    auto t0 = Clock::now();
    patchcall::Status s = deferThis ? rt_.updateBatch(updates, deferred) : rt_.updateBatch(updates);
    auto t1 = Clock::now();
    if (!s.isOk()) return fail("updateBatch (" + std::to_string(batch) + " keys): " + s.toString());
    for (size_t i = 0; i < batch; ++i) {
      if (deferThis) unpublished.emplace_back(batchKeys[i], batchVersions[i]);
      else cells_[batchKeys[i]].end.store(tag(batchKeys[i], batchVersions[i]), std::memory_order_release);
      version[batchKeys[i]] = batchVersions[i];
    }
    if (deferThis) {
      st.deferred.fetch_add(batch, std::memory_order_relaxed);
      if (++deferredBatches >= c.publishEvery) {
        if (patchcall::Status p = rt_.publish(); !p.isOk()) return fail("publish: " + p.toString());
        st.publishes.fetch_add(1, std::memory_order_relaxed);
        storeEnds();
      }
    } else {
      storeEnds();  // an immediate update returned: every earlier write is published too
    }
    int64_t retired = targets_.committed(batchKeys.data(), batch, &err);
    if (retired < 0) return fail(err);
    st.latencyNs.push_back(static_cast<uint32_t>(
        std::min<int64_t>(UINT32_MAX, std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count())));
    st.blobsRetired.fetch_add(static_cast<uint64_t>(retired), std::memory_order_relaxed);
    st.updates.fetch_add(batch, std::memory_order_relaxed);
    st.batches.fetch_add(1, std::memory_order_relaxed);
    done += batch;
  }
  if (!unpublished.empty() && rt_.publish().isOk()) storeEnds();
  st.seconds = std::chrono::duration<double>(Clock::now() - begin).count();
}

}  // namespace stress
