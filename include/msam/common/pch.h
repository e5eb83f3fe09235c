// Shared precompiled header: parsing LibTorch's headers dominates compile time on small machines.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>
