// Coordinates in the DiT mesh [replica][cfg][pipefusion][ring][ulysses], ulysses varying fastest.
#pragma once
#include "partition/layout.h"

namespace ditrun::partition {

struct MeshCoord {
  int replica = 0;
  int cfg = 0;
  int pipefusion = 0;
  int ring = 0;
  int ulysses = 0;
  bool operator==(const MeshCoord&) const = default;
};

inline int mesh_index(const Layout& l, const MeshCoord& c) {
  return (((c.replica * l.cfg + c.cfg) * l.pipefusion + c.pipefusion) * l.ring + c.ring) * l.ulysses + c.ulysses;
}

inline MeshCoord mesh_coord(const Layout& l, int index) {
  MeshCoord c;
  c.ulysses = index % l.ulysses;
  index /= l.ulysses;
  c.ring = index % l.ring;
  index /= l.ring;
  c.pipefusion = index % l.pipefusion;
  index /= l.pipefusion;
  c.cfg = index % l.cfg;
  c.replica = index / l.cfg;
  return c;
}

}  // namespace ditrun::partition
