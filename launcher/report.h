// report.json: what a job was (resolved), how it was laid out, and where the time went.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/communicators.h"
#include "comm/mpi_runtime.h"
#include "partition/plan.h"

namespace ditrun {

nlohmann::json plan_to_json(const partition::Plan& plan);

// Adds each group's communicator check to the plan's JSON groups (matched by set name and index).
void add_group_checks(nlohmann::json& plan_json, const std::vector<comm::GroupCheck>& checks);

// The partition plan's groups as named sets for the communicator builder (same names as in the plan).
std::vector<comm::GroupSet> plan_group_sets(const partition::Plan& plan);

// This rank's place for report.json: world rank, host, local rank (the launcher's and MPI's), Slurm node,
// CUDA_VISIBLE_DEVICES and the device it chose (-1 on CPU).
nlohmann::json launch_rank_json(const comm::MpiRuntime& mpi, int cuda_device);

// report.json's "launch": the launcher, where local ranks came from, the Slurm job (ids, array task, node list)
// when there is one, every rank's place (from launch_rank_json), and warnings (local ranks that differ from MPI's
// host split, ranks sharing a GPU).
nlohmann::json launch_to_json(const comm::LaunchPlace& place, const nlohmann::json& ranks);

class StageTimes {
 public:
  void add(const std::string& stage, double seconds);
  nlohmann::json to_json() const;

 private:
  std::vector<std::pair<std::string, double>> stages_;
};

// Writes `report` to dir/report.json through a .part file renamed when complete.
std::filesystem::path write_report(const std::filesystem::path& dir, const nlohmann::json& report);
// The same to any path (its folder is created).
std::filesystem::path write_report_file(const std::filesystem::path& path, const nlohmann::json& report);

// "2026-11-22T04:31:07Z"
std::string utc_timestamp();

}  // namespace ditrun
