// report.json: what a job was (resolved), how it was laid out, and where the time went.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/communicators.h"
#include "partition/plan.h"

namespace ditrun {

nlohmann::json plan_to_json(const partition::Plan& plan);

// Adds each group's communicator check to the plan's JSON groups (matched by set name and index).
void add_group_checks(nlohmann::json& plan_json, const std::vector<comm::GroupCheck>& checks);

// The partition plan's groups as named sets for the communicator builder (same names as in the plan).
std::vector<comm::GroupSet> plan_group_sets(const partition::Plan& plan);

class StageTimes {
 public:
  void add(const std::string& stage, double seconds);
  nlohmann::json to_json() const;

 private:
  std::vector<std::pair<std::string, double>> stages_;
};

// Writes `report` to dir/report.json through a .part file renamed when complete.
std::filesystem::path write_report(const std::filesystem::path& dir, const nlohmann::json& report);

// "2026-11-22T04:31:07Z"
std::string utc_timestamp();

}  // namespace ditrun
