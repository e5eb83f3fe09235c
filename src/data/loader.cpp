#include "msam/data/loader.h"

#include <algorithm>

#include "msam/common/error.h"
#include "msam/data/cache.h"
#include "msam/data/split.h"

namespace msam::data {

std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  if (!shuffle || n < 2) return order;
  uint64_t state = seed ^ (0x5851F42D4C957F2Dull * static_cast<uint64_t>(epoch + 1));
  for (size_t i = n - 1; i > 0; --i) std::swap(order[i], order[splitmix64(state) % (i + 1)]);
  return order;
}

std::pair<size_t, size_t> rank_share(size_t begin, size_t end, int rank, int world) {
  const size_t n = end - begin, r = static_cast<size_t>(rank), w = static_cast<size_t>(world);
  return {begin + n * r / w, begin + n * (r + 1) / w};
}

Batch load_batch(const std::vector<std::string>& entries,
                 const std::vector<Augmentation>& augmentations) {
  if (entries.empty()) return Batch{};
  std::vector<at::Tensor> images, labels;
  for (size_t i = 0; i < entries.size(); ++i) {
    auto c = read_cache_entry(entries[i]);
    if (!images.empty() && !c.image.sizes().equals(images.front().sizes().slice(1)))
      throw file_error(entries[i], "patch size differs from the other samples of the batch");
    apply_augmentation(augmentations[i], c.info.record.patch_geometry.spacing, c.image, c.label);
    images.push_back(c.image.unsqueeze(0));
    labels.push_back(c.label.unsqueeze(0));
  }
  Batch b;
  b.image = at::stack(images);
  b.label = at::stack(labels);
  b.entries = entries;
  return b;
}

EpochLoader::EpochLoader(std::vector<std::string> entries, const LoaderOptions& options, int64_t epoch)
    : entries_(std::move(entries)), options_(options), epoch_(epoch) {
  if (options_.batch_size < 1) throw Error("loader: batch_size must be ≥ 1");
  if (options_.workers < 1) throw Error("loader: workers must be ≥ 1");
  if (options_.prefetch < 1) throw Error("loader: prefetch must be ≥ 1");
  if (options_.world < 1 || options_.rank < 0 || options_.rank >= options_.world)
    throw Error("loader: rank " + std::to_string(options_.rank) + " is outside a world of " +
                std::to_string(options_.world));
  order_ = epoch_order(entries_.size(), options_.seed, epoch_, options_.shuffle);
  const auto n = static_cast<int64_t>(entries_.size());
  num_batches_ = options_.drop_last ? n / options_.batch_size : (n + options_.batch_size - 1) / options_.batch_size;
  for (int w = 0; w < options_.workers; ++w) workers_.emplace_back([this] { work(); });
}

EpochLoader::~EpochLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  for (auto& t : workers_) t.join();
}

Batch EpochLoader::make_batch(int64_t index) const {
  const auto begin = static_cast<size_t>(index * options_.batch_size);
  const auto end = std::min(entries_.size(), begin + static_cast<size_t>(options_.batch_size));
  const auto [first, last] = rank_share(begin, end, options_.rank, options_.world);
  std::vector<std::string> files;
  std::vector<Augmentation> augmentations;
  for (size_t p = first; p < last; ++p) {
    files.push_back(entries_[order_[p]]);
    augmentations.push_back(sample_augmentation(options_.augment, options_.seed, epoch_, p));
  }
  auto b = load_batch(files, augmentations);
  b.index = index;
  b.global_size = static_cast<int64_t>(end - begin);
  b.offset = static_cast<int64_t>(first - begin);
  return b;
}

void EpochLoader::work() {
  for (;;) {
    int64_t index;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] {
        return stop_ || next_claim_ >= num_batches_ || next_claim_ < next_out_ + options_.prefetch;
      });
      if (stop_ || next_claim_ >= num_batches_) return;
      index = next_claim_++;
    }
    Slot slot;
    try {
      slot.batch = make_batch(index);
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_[index] = std::move(slot);
    }
    changed_.notify_all();
  }
}

std::optional<Batch> EpochLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (next_out_ >= num_batches_) return std::nullopt;
  changed_.wait(lock, [&] { return ready_.count(next_out_) != 0; });
  auto slot = std::move(ready_[next_out_]);
  ready_.erase(next_out_);
  ++next_out_;
  lock.unlock();
  changed_.notify_all();
  if (slot.error) std::rethrow_exception(slot.error);
  return std::move(slot.batch);
}

}  // namespace msam::data
