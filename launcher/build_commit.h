// The git commit the running binary was built from (cmake/build_commit.cmake writes it at every build; "-dirty"
// when tracked files had uncommitted changes, "unknown" outside a checkout): --version and report.json's
// ditrun.commit.
#pragma once

namespace ditrun {

const char* build_commit();

}  // namespace ditrun
