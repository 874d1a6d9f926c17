// A region's blocks: what each one is doing, and the order they came into
// the buffer in (eviction takes the oldest).
#pragma once

#include <cstdint>
#include <deque>
#include <utility>
#include <vector>

namespace memlend::rdma::region_detail {

enum class BlockState : std::uint8_t {
  absent,    // not in the buffer: the donor (or mirror) has it
  fetching,  // a read is on its way into the buffer
  unmapped,  // in the buffer, not mapped: a read-ahead marker, or its mapping failed
  mapped,    // in the buffer and mapped
  writing,   // held in the buffer while it is written back (flush or eviction)
  lost,      // unreachable (no donor, no mirror): poisoned
};

// Every change of state goes through the functions below, so that what each
// state implies about the other fields is kept in one place.
struct Block {
  BlockState state = BlockState::absent;
  bool dirty = false;   // differs from what the donor and mirror hold
  bool zero = false;    // the donor holds only zeros for it (never written back)
  bool marker = false;  // read-ahead marker: left unmapped, its fault extends the stream
  bool queued = false;  // in the write-back queue
  // writing: it was mapped, and so write-protected for the write-back (the
  // fence) and its bytes are read from the view.
  bool fenced = false;
  // writing a dirty block: the copies (donor, mirror) still being made, and
  // which of them took it.
  std::uint8_t saves = 0;
  bool donor_saved = false;
  bool mirror_saved = false;
  std::uint64_t arrival = 0;  // when it last came into the buffer, for the FIFO

  bool resident() const { return state == BlockState::unmapped || state == BlockState::mapped; }
  // Its bytes are in the faulting view.
  bool in_view() const { return state == BlockState::mapped || (state == BlockState::writing && fenced); }

  void fetch() { state = BlockState::fetching; }
  // The bytes are in the buffer; without write-protected mapping a block
  // must be assumed written.
  void arrive(bool assume_dirty) {
    state = BlockState::unmapped;
    dirty = assume_dirty;
  }
  void map() { state = BlockState::mapped; }
  void start_write(std::uint8_t copies) {
    fenced = state == BlockState::mapped;
    state = BlockState::writing;
    saves = copies;
    donor_saved = mirror_saved = false;
  }
  // The write-back is over and the block stays (clean if a copy took it).
  void stay(bool saved) {
    state = fenced ? BlockState::mapped : BlockState::unmapped;
    if (saved) dirty = false;
  }
  void leave() {
    state = BlockState::absent;
    dirty = false;
    marker = false;
  }
  // True if it was lost already.
  bool lose() {
    bool again = state == BlockState::lost;
    state = BlockState::lost;
    return again;
  }
};

class BlockTable {
 public:
  void assign(std::uint64_t count, const Block& initial) { blocks_.assign(count, initial); }
  std::uint64_t size() const { return blocks_.size(); }
  Block& operator[](std::uint64_t b) { return blocks_[b]; }
  const Block& operator[](std::uint64_t b) const { return blocks_[b]; }

  // Block b came into the buffer, or is to be seen by eviction again (it
  // may have been passed over while it was being written).
  void enter(std::uint64_t b) {
    blocks_[b].arrival = ++arrivals_;
    fifo_.emplace_back(b, blocks_[b].arrival);
  }

  // Calls f(b, block) for each resident block, oldest first, until f returns
  // true. Entries of blocks that left since are skipped when met, rather
  // than searched for when they leave.
  template <class F>
  void scan(F&& f) {
    for (auto [b, arrival] : fifo_)
      if (current(b, arrival) && f(b, blocks_[b])) return;
  }

  // The oldest resident block not already queued for write-back, or false;
  // entries passed over are dropped. pop_oldest() then takes it off.
  bool oldest(std::uint64_t& b) {
    while (!fifo_.empty()) {
      auto [v, arrival] = fifo_.front();
      if (current(v, arrival) && !blocks_[v].queued) {
        b = v;
        return true;
      }
      fifo_.pop_front();
    }
    return false;
  }
  void pop_oldest() { fifo_.pop_front(); }

 private:
  bool current(std::uint64_t b, std::uint64_t arrival) const {
    return blocks_[b].arrival == arrival && blocks_[b].resident();
  }

  std::vector<Block> blocks_;
  std::deque<std::pair<std::uint64_t, std::uint64_t>> fifo_;  // (block, arrival)
  std::uint64_t arrivals_ = 0;
};

}  // namespace memlend::rdma::region_detail
