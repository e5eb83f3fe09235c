// Batches from the preprocessed cache: background worker threads fill a bounded prefetch
// queue while training runs. The batches of an epoch depend only on (entries, options,
// epoch): the order comes from the seed, each sample's augmentation from the seed and the
// sample's position, and batches are handed out in index order whichever worker finished first.
#pragma once
#include <ATen/ATen.h>

#include <array>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "msam/data/augment.h"

namespace msam::data {

struct LoaderOptions {
  int64_t batch_size = 2;
  int workers = 2;
  int prefetch = 4;          // batches loaded ahead of the consumer, at most
  bool shuffle = true;
  AugmentOptions augment;
  bool drop_last = false;
  uint64_t seed = 0;
  // Data parallelism: this loader yields rank `rank`'s share of every batch of `batch_size`
  // (now the global batch): its contiguous 1/`world` of the batch's positions, so that the
  // ranks together see exactly the samples, order and augmentations of one process.
  int rank = 0;
  int world = 1;
};

struct Batch {
  at::Tensor image;  // float32 B×1×X×Y×Z; undefined when this rank's share is empty
  at::Tensor label;  // uint8 {0, 1} B×1×X×Y×Z; likewise
  std::vector<std::string> entries;  // cache files of the samples, in batch order
  int64_t index = 0;                 // position within the epoch
  // The whole batch over all ranks, and where this share starts in it (0 and B in one
  // process): simulated clicks draw for the whole batch and keep this share's draws.
  int64_t global_size = 0;
  int64_t offset = 0;
  int64_t size() const { return static_cast<int64_t>(entries.size()); }
};

// Positions [first, last) of rank `rank`'s share of the global positions [begin, end).
std::pair<size_t, size_t> rank_share(size_t begin, size_t end, int rank, int world);

// Entry positions in the order of `epoch`: a seeded Fisher–Yates when shuffling.
std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch, bool shuffle);

// Reads the given cache entries, augments each and stacks them into one batch (no threads);
// no entries give a batch with undefined tensors.
Batch load_batch(const std::vector<std::string>& entries,
                 const std::vector<Augmentation>& augmentations);

// One pass over the entries. Construction starts the workers; destruction (or the end of
// the epoch) stops and joins them, also when the consumer stops early. A worker's error
// (e.g. a corrupt cache file) is rethrown by next() at that batch's turn.
class EpochLoader {
 public:
  EpochLoader(std::vector<std::string> entries, const LoaderOptions& options, int64_t epoch);
  ~EpochLoader();
  EpochLoader(const EpochLoader&) = delete;
  EpochLoader& operator=(const EpochLoader&) = delete;

  std::optional<Batch> next();  // nullopt after the last batch
  int64_t num_batches() const { return num_batches_; }

 private:
  struct Slot {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  void work();
  Batch make_batch(int64_t index) const;

  std::vector<std::string> entries_;
  LoaderOptions options_;
  int64_t epoch_;
  std::vector<size_t> order_;
  int64_t num_batches_ = 0;

  std::mutex mutex_;
  std::condition_variable changed_;
  int64_t next_claim_ = 0, next_out_ = 0;
  bool stop_ = false;
  std::map<int64_t, Slot> ready_;
  std::vector<std::thread> workers_;
};

}  // namespace msam::data
