#include "launcher/report.h"

#include <ctime>
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

void StageTimes::add(const std::string& stage, double seconds) { stages_.emplace_back(stage, seconds); }

json StageTimes::to_json() const {
  json list = json::array();
  for (const auto& [name, seconds] : stages_) list.push_back({{"stage", name}, {"seconds", seconds}});
  return list;
}

std::filesystem::path write_report(const std::filesystem::path& dir, const json& report) {
  std::filesystem::create_directories(dir);
  const auto path = dir / "report.json";
  const auto part = dir / "report.json.part";
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
