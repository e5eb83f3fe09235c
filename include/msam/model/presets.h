// Named model sizes that more than one place builds.
#pragma once
#include "msam/model/msam.h"

namespace msam::model {

// The small model of configs/tiny_cpu.yaml (the demo's): 64³ input in 8³ patches (a 32³
// low-res mask), width 96, 2 encoder blocks, LoRA rank 4. Trains on a CPU in minutes.
MSAMConfig tiny_cpu_config();

}  // namespace msam::model
