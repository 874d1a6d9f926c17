#include "core/failpoint.hpp"

namespace memlend::failpoint {

bool fires(const char*) { return false; }

}  // namespace memlend::failpoint
