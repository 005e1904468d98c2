#include "launcher/report.h"

#include <cstdlib>
#include <ctime>
#include <map>
#include <fstream>
#include <stdexcept>


namespace ditrun {

using nlohmann::json;
using partition::GroupKind;

json plan_to_json(const partition::Plan& plan) {
  const auto& l = plan.layout();
  json j;
  j["layout"] = {{"replicas", l.replicas},   {"cfg", l.cfg},           {"pipefusion", l.pipefusion},
                 {"ring", l.ring},           {"ulysses", l.ulysses},   {"vae_ranks", l.vae_ranks},
                 {"text_ranks", l.text_ranks}, {"dit_ranks", l.dit_ranks()}, {"world_size", l.world_size()},
                 {"vae_role", l.dedicated_vae() ? "dedicated" : "shared"},
                 {"text_role", l.dedicated_text() ? "dedicated" : "shared"}};
  j["warnings"] = plan.warnings();
  j["hosts"] = plan.topology().hosts();
  json ranks = json::array();
  for (int r = 0; r < plan.topology().world_size(); ++r) {
    const auto& roles = plan.roles(r);
    json row = {{"rank", r}, {"host", plan.topology().host(r)}, {"roles", roles.describe()}};
    if (roles.dit)
      row["mesh"] = {{"replica", roles.dit->replica}, {"cfg", roles.dit->cfg}, {"pipefusion", roles.dit->pipefusion},
                     {"ring", roles.dit->ring},       {"ulysses", roles.dit->ulysses}};
    ranks.push_back(std::move(row));
  }
  j["ranks"] = std::move(ranks);
  json groups = json::object();
  for (GroupKind kind : partition::kAllGroupKinds) {
    json list = json::array();
    for (const auto& g : plan.groups(kind))
      list.push_back({{"index", g.index}, {"ranks", g.ranks}, {"hosts", plan.hosts_of(g)}});
    groups[partition::group_kind_name(kind)] = std::move(list);
  }
  j["groups"] = std::move(groups);
  return j;
}

void add_group_checks(json& plan_json, const std::vector<comm::GroupCheck>& checks) {
  for (const auto& c : checks) {
    json& g = plan_json.at("groups").at(c.set).at(c.group);
    json check = {{"ok", c.ok}, {"seconds", c.seconds}, {"backend", c.backend}};
    if (!c.alias_of.empty()) check["communicator_shared_with"] = c.alias_of;
    if (!c.ok) check["error"] = c.detail;
    g["check"] = std::move(check);
  }
}

std::vector<comm::GroupSet> plan_group_sets(const partition::Plan& plan) {
  std::vector<comm::GroupSet> sets;
  for (GroupKind kind : partition::kAllGroupKinds) {
    comm::GroupSet set{partition::group_kind_name(kind), {}};
    for (const auto& g : plan.groups(kind)) set.groups.push_back(g.ranks);
    sets.push_back(std::move(set));
  }
  return sets;
}

json launch_rank_json(const comm::MpiRuntime& mpi, int cuda_device) {
  const auto& place = mpi.launch_place();
  json j = {{"rank", mpi.rank()},
            {"host", mpi.hosts().at(mpi.rank())},
            {"local_rank", mpi.local_rank()},
            {"local_size", mpi.local_size()},
            {"mpi_local_rank", mpi.shared_memory_local_rank()}};
  if (place.node >= 0) j["slurm_node_id"] = place.node;
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES")) j["cuda_visible_devices"] = visible;
  if (cuda_device >= 0) j["cuda_device"] = cuda_device;
  return j;
}

namespace {
// The device a rank uses as the host sees it: entry cuda_device of its CUDA_VISIBLE_DEVICES list, if any.
std::string physical_device(const json& rank) {
  const int device = rank.at("cuda_device").get<int>();
  const std::string visible = rank.value("cuda_visible_devices", "");
  if (visible.empty()) return std::to_string(device);
  size_t start = 0;
  for (int i = 0; i < device && start != std::string::npos; ++i) {
    start = visible.find(',', start);
    if (start != std::string::npos) ++start;
  }
  if (start == std::string::npos) return visible + "#" + std::to_string(device);
  return visible.substr(start, visible.find(',', start) - start);
}
}  // namespace

json launch_to_json(const comm::LaunchPlace& place, const json& ranks) {
  json j = {{"launcher", place.launcher},
            {"local_rank_from", place.local_rank_variable.empty() ? "MPI shared-memory split"
                                                                   : place.local_rank_variable}};
  // The Slurm job this ran in, if any (the batch script's variables reach every launcher).
  json slurm = json::object();
  for (const char* name : {"SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
                           "SLURM_ARRAY_TASK_COUNT", "SLURM_STEP_ID", "SLURM_JOB_NODELIST", "SLURM_JOB_NUM_NODES",
                           "SLURM_NTASKS", "SLURM_CLUSTER_NAME", "SLURM_JOB_PARTITION"})
    if (const char* value = std::getenv(name)) slurm[name] = value;
  if (!slurm.empty()) j["slurm"] = std::move(slurm);
  json warnings = json::array();
  std::map<std::pair<std::string, std::string>, std::vector<int>> ranks_on_device;  // (host, device) -> ranks
  for (const auto& r : ranks) {
    if (r.at("local_rank") != r.at("mpi_local_rank"))
      warnings.push_back("rank " + r.at("rank").dump() + ": " + place.local_rank_variable + " gives local rank " +
                         r.at("local_rank").dump() + ", MPI's host split " + r.at("mpi_local_rank").dump());
    if (r.contains("cuda_device"))
      ranks_on_device[{r.at("host").get<std::string>(), physical_device(r)}].push_back(r.at("rank").get<int>());
  }
  for (const auto& [where, list] : ranks_on_device)
    if (list.size() > 1)
      warnings.push_back(std::to_string(list.size()) + " ranks share one GPU on " + where.first +
                         " (more ranks on the host than visible GPUs)");
  j["warnings"] = std::move(warnings);
  j["ranks"] = ranks;
  return j;
}

void StageTimes::add(const std::string& stage, double seconds) { stages_.emplace_back(stage, seconds); }

json StageTimes::to_json() const {
  json list = json::array();
  for (const auto& [name, seconds] : stages_) list.push_back({{"stage", name}, {"seconds", seconds}});
  return list;
}

std::filesystem::path write_report(const std::filesystem::path& dir, const json& report) {
  return write_report_file(dir / "report.json", report);
}

std::filesystem::path write_report_file(const std::filesystem::path& path, const json& report) {
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  const auto part = std::filesystem::path(path.string() + ".part");
  {
    std::ofstream out(part);
    out << report.dump(2) << "\n";
    out.close();
    if (!out) throw std::runtime_error("could not write " + part.string());
  }
  std::filesystem::rename(part, path);
  return path;
}

std::string utc_timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

}  // namespace ditrun
