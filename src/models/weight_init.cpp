#include "finch/models/weight_init.h"

namespace finch::models {

namespace {
thread_local bool skip_random_init = false;
}  // namespace

SkipRandomInit::SkipRandomInit() : previous_(skip_random_init) { skip_random_init = true; }

SkipRandomInit::~SkipRandomInit() { skip_random_init = previous_; }

bool random_init_enabled() { return !skip_random_init; }

}  // namespace finch::models
