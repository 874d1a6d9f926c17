// A few connections to one lease, shared by the threads that serve requests
// for it (rdma/memory_file.cpp).
#pragma once

#include "rdma/transport.hpp"

#include <algorithm>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

namespace memlend::rdma {

// The connections to one lease, lent to requests one at a time: a
// connection carries one request's transfers in order, and a few of them let
// requests for different blocks overlap.
class ConnectionPool {
 public:
  ConnectionPool(LeaseTarget target, TransportKind kind, Timeouts t, unsigned max)
      : target_(std::move(target)), kind_(kind), t_(t), max_(std::max(1u, max)) {}
  ~ConnectionPool() { interrupt(); }

  class Lent {
   public:
    Lent(ConnectionPool& pool, std::unique_ptr<LeaseConnection> c) : pool_(&pool), c_(std::move(c)) {}
    Lent(Lent&& o) noexcept : pool_(o.pool_), c_(std::move(o.c_)) {}
    ~Lent() {
      if (c_) pool_->give_back(std::move(c_), ok_);
    }
    LeaseConnection* operator->() const { return c_.get(); }
    // A failed transfer breaks its connection for good (transport.hpp).
    void broken() { ok_ = false; }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<LeaseConnection> c_;
    bool ok_ = true;
  };

  Expected<Lent> take() {
    std::unique_lock<std::mutex> lock(mu_);
    auto deadline = Clock::now() + t_.connect + t_.io;
    for (;;) {
      if (interrupted_) return Error{"the lease's connections were cut", ErrorCode::unavailable};
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        lent_.push_back(c.get());
        return Lent(*this, std::move(c));
      }
      if (open_ < max_) break;
      if (cv_.wait_until(lock, deadline) == std::cv_status::timeout)
        return Error{"no connection to the lease came free in time", ErrorCode::timed_out};
    }
    ++open_;
    lock.unlock();
    auto c = connect_lease(target_, kind_, t_);
    std::lock_guard<std::mutex> relock(mu_);
    if (!c) {
      --open_;
      cv_.notify_one();
      return c.error();
    }
    if (interrupted_) (*c)->interrupt();
    lent_.push_back(c->get());
    return Lent(*this, std::move(*c));
  }

  // Cuts every connection, idle or lent, so that no request waits out a
  // timeout on a donor already known to be gone.
  void interrupt() {
    std::lock_guard<std::mutex> lock(mu_);
    interrupted_ = true;
    for (auto& c : idle_) c->interrupt();
    for (auto* c : lent_) c->interrupt();
    cv_.notify_all();
  }

  const LeaseTarget& target() const { return target_; }

 private:
  friend class Lent;
  void give_back(std::unique_ptr<LeaseConnection> c, bool ok) {
    std::lock_guard<std::mutex> lock(mu_);
    lent_.erase(std::find(lent_.begin(), lent_.end(), c.get()));
    if (ok && !interrupted_) {
      idle_.push_back(std::move(c));
    } else {
      --open_;
    }
    cv_.notify_one();
  }

  LeaseTarget target_;
  TransportKind kind_;
  Timeouts t_;
  unsigned max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<LeaseConnection>> idle_;
  std::vector<LeaseConnection*> lent_;
  unsigned open_ = 0;
  bool interrupted_ = false;
};

}  // namespace memlend::rdma
