// The planner's job runner and the kinds of job it runs (actors/planner_job.hpp
// has their shape). Private to actors/planner*.cpp.
#pragma once

#include "actors/planner_txn.hpp"

#include <caf/typed_response_promise.hpp>

#include <vector>

namespace memlend::planner_parts {

// Runs the plan once every job before it has finished.
void enqueue(self_ptr self, JobPlan plan);
// Runs the plans, in order, before anything already waiting: the rest of
// what the job under way began.
void enqueue_next(self_ptr self, std::vector<JobPlan> plans);

// A job with nothing to reserve: it writes its batch and acts once durable.
inline Job write_job(JobCommit commit) { return Job{{}, std::move(commit), {}}; }
inline JobPlan write_only(JobCommit commit) {
  return [commit] { return write_job(commit); };
}

// A VM's need: decided when its turn comes, then carried out (lend memory,
// migrate), or said (unsatisfied, dry run).
JobPlan need_job(self_ptr self, std::uint32_t vm, std::int64_t mem, std::int64_t cpu,
                 caf::typed_response_promise<NeedAnswer> rp);
// A VM can give memory back: the leases it no longer needs end.
JobPlan surplus_job(self_ptr self, std::uint32_t vm, std::int64_t mem, std::int64_t cpu,
                    caf::typed_response_promise<std::int64_t> rp);

// A failed lease, to move to a new donor.
struct Lost {
  std::uint32_t vm = 0;
  std::uint64_t lease = 0;
  std::int64_t mib = 0;
};
// Moves a failed lease of donor `failed` to new donors; they take its
// contents from the mirror.
JobPlan rehome_job(self_ptr self, Lost lost, policy::HostId failed);

// planner_failures.cpp: a host goes down or comes back, a mirror cannot be written.
JobPlan host_down_job(self_ptr self, std::uint32_t h);
JobPlan host_up_job(self_ptr self, std::uint32_t h);
JobPlan mirror_failed_job(self_ptr self, std::uint32_t from, std::string vm, std::string why);

}  // namespace memlend::planner_parts
