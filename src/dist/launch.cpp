#include "msam/dist/launch.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "msam/common/error.h"

extern char** environ;

namespace msam::dist {

namespace {

const std::string* find(const Environment& env, const std::string& key) {
  const auto it = env.find(key);
  return it == env.end() || it->second.empty() ? nullptr : &it->second;
}

int64_t parse_int(const std::string& key, const std::string& value) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(value, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != value.size())
    throw Error("launch: " + key + "=" + value + " is not an integer");
  return v;
}

int int_var(const Environment& env, const std::string& key, int fallback) {
  const auto* v = find(env, key);
  return v ? static_cast<int>(parse_int(key, *v)) : fallback;
}

// "4(x2),3" → 4: the task count of the first node.
int first_task_count(const std::string& key, const std::string& value) {
  const auto end = value.find_first_of("(,");
  return static_cast<int>(parse_int(key, value.substr(0, end)));
}

void check(const LaunchInfo& info) {
  if (info.world_size < 1)
    throw Error("launch: world size must be ≥ 1, got " + std::to_string(info.world_size) +
                " (" + info.launcher + ")");
  if (info.rank < 0 || info.rank >= info.world_size)
    throw Error("launch: rank " + std::to_string(info.rank) + " is outside 0.." +
                std::to_string(info.world_size - 1) + " (" + info.launcher + ")");
  if (info.local_world_size < 1 || info.local_rank < 0 ||
      info.local_rank >= info.local_world_size)
    throw Error("launch: local rank " + std::to_string(info.local_rank) +
                " is outside 0.." + std::to_string(info.local_world_size - 1) + " (" +
                info.launcher + ")");
  if (info.master_port < 1 || info.master_port > 65535)
    throw Error("launch: MASTER_PORT must be in 1..65535, got " +
                std::to_string(info.master_port));
  if (info.master_addr.empty()) throw Error("launch: MASTER_ADDR is empty");
}

}  // namespace

Environment process_environment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    const std::string kv(*e);
    const auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

std::string LaunchInfo::describe() const {
  if (!distributed()) return "single process";
  return "rank " + std::to_string(rank) + " of " + std::to_string(world_size);
}

std::string first_slurm_host(const std::string& nodelist) {
  // The first entry ends at a comma outside brackets.
  size_t end = 0;
  int depth = 0;
  for (; end < nodelist.size(); ++end) {
    const char c = nodelist[end];
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ',' && depth == 0) break;
  }
  const std::string first = nodelist.substr(0, end);
  const auto open = first.find('[');
  if (open == std::string::npos) {
    if (first.empty()) throw Error("launch: SLURM_JOB_NODELIST is empty");
    return first;
  }
  const auto close = first.find(']', open);
  if (close == std::string::npos)
    throw Error("launch: SLURM_JOB_NODELIST=" + nodelist + " has an unclosed '['");
  // "03-05,9" → "03": the first number of the first range, zero padding kept.
  std::string range = first.substr(open + 1, close - open - 1);
  range = range.substr(0, range.find_first_of(",-"));
  if (range.empty() || !std::all_of(range.begin(), range.end(),
                                    [](unsigned char c) { return std::isdigit(c); }))
    throw Error("launch: SLURM_JOB_NODELIST=" + nodelist + " has no host number in brackets");
  return first.substr(0, open) + range + first.substr(close + 1);
}

int slurm_port(int64_t job_id) { return 15000 + static_cast<int>(job_id % 20000); }

LaunchInfo launch_info(const Environment& env) {
  LaunchInfo info;
  if (find(env, "RANK") && find(env, "WORLD_SIZE")) {
    info.launcher = "torchrun";
    info.rank = int_var(env, "RANK", 0);
    info.world_size = int_var(env, "WORLD_SIZE", 1);
    info.local_rank = int_var(env, "LOCAL_RANK", info.rank);
    info.local_world_size = int_var(env, "LOCAL_WORLD_SIZE", info.world_size);
    if (const auto* a = find(env, "MASTER_ADDR")) info.master_addr = *a;
    info.master_port = int_var(env, "MASTER_PORT", info.master_port);
    const auto* agent = find(env, "TORCHELASTIC_USE_AGENT_STORE");
    info.agent_store = agent && (*agent == "True" || *agent == "true" || *agent == "1");
  } else if (find(env, "SLURM_PROCID") && find(env, "SLURM_NTASKS")) {
    info.launcher = "slurm";
    info.rank = int_var(env, "SLURM_PROCID", 0);
    info.world_size = int_var(env, "SLURM_NTASKS", 1);
    info.local_rank = int_var(env, "SLURM_LOCALID", 0);
    if (const auto* n = find(env, "SLURM_NTASKS_PER_NODE"))
      info.local_world_size = first_task_count("SLURM_NTASKS_PER_NODE", *n);
    else if (const auto* t = find(env, "SLURM_TASKS_PER_NODE"))
      info.local_world_size = first_task_count("SLURM_TASKS_PER_NODE", *t);
    else
      info.local_world_size = info.local_rank + 1;
    if (const auto* a = find(env, "MASTER_ADDR"))
      info.master_addr = *a;
    else if (const auto* nodes = find(env, "SLURM_JOB_NODELIST"))
      info.master_addr = first_slurm_host(*nodes);
    else if (const auto* nodes_old = find(env, "SLURM_NODELIST"))
      info.master_addr = first_slurm_host(*nodes_old);
    else if (info.world_size > 1)
      throw Error("launch: SLURM_PROCID is set but neither MASTER_ADDR nor SLURM_JOB_NODELIST "
                  "names the first node");
    if (find(env, "MASTER_PORT"))
      info.master_port = int_var(env, "MASTER_PORT", info.master_port);
    else if (const auto* job = find(env, "SLURM_JOB_ID"))
      info.master_port = slurm_port(parse_int("SLURM_JOB_ID", *job));
  }
  check(info);
  return info;
}

}  // namespace msam::dist
