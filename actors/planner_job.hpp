// The shape of the planner's work: a job is a short transaction across
// actors. Its steps reserve or change something at another actor (a donor's
// memory, a target's room, the platform's VM), each with the step that
// undoes it; once every step is done the job commits: one store batch, acted
// on once durable. The planner runs one job at a time, so no megabyte is
// promised twice and each job decides on the view the jobs before it left.
#pragma once

#include "core/expected.hpp"

#include <deque>
#include <functional>
#include <memory>
#include <vector>

namespace memlend {

struct JobStep {
  using Answer = std::function<void(Expected<void>)>;
  // Asks; answers once, through the argument.
  std::function<void(Answer)> run;
  // Undoes the step when a later one fails; none: it reserved nothing.
  std::function<void()> compensate;
  // A peer that did not answer (ErrorCode::timed_out) may still have done
  // what it was asked: then nothing before the step is undone, since the
  // reservations may be in use.
  bool silence_may_mean_done = false;
};

// Every step done: writes the job's batch and calls `done` once the batch is
// durable and acted on.
using JobDone = std::function<void()>;
using JobCommit = std::function<void(JobDone done)>;

struct Job {
  std::vector<JobStep> steps;
  JobCommit commit;
  // A step failed and the steps before it are undone: says why and answers
  // whoever waits. None: nothing to say.
  std::function<void(const Error&)> abort;
};

// A job is planned when its turn comes, not when it is asked for: it decides
// on the view as the jobs before it left it.
using JobPlan = std::function<Job()>;

struct JobQueue {
  std::deque<JobPlan> waiting;
  std::shared_ptr<Job> current;  // none: the planner is idle
};

}  // namespace memlend
