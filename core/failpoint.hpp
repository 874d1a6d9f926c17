// Failpoints: named places where a test build of memlend fails on purpose,
// so that a test can show what an operator sees when memlend really fails
// there (an actor crashing over and over raises the restart-storm alert).
// The shipped binary links core/failpoints_off.cpp, where no failpoint ever
// fires and nothing reads the environment; only the test binary
// memlend-failpoints links the one that reads MEMLEND_FAILPOINTS
// (DESIGN.md, "Failpoints").
#pragma once

namespace memlend::failpoint {

// Whether the failpoint `name` fires at this pass. Cheap and thread-safe.
bool fires(const char* name);

}  // namespace memlend::failpoint
