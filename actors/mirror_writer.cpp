#include "actors/mirror_writer.hpp"

#include <caf/all.hpp>

#include <cerrno>
#include <filesystem>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace memlend {

namespace {

// The file is sparse: it takes disk space as blocks are written back to it.
std::string size_file(const std::string& path, std::int64_t mib) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return std::strerror(errno);
  std::string err;
  if (::ftruncate(fd, static_cast<off_t>(mib) * 1024 * 1024) != 0) err = std::strerror(errno);
  ::close(fd);
  return err;
}

}  // namespace

mirror_actor::behavior_type mirror_writer(mirror_actor::stateful_pointer<mirror_state> self, MirrorInfo info,
                                          std::shared_ptr<DataPlane> plane, supervisor_actor supervisor,
                                          sink_actor sink) {
  auto& st = self->state;
  st.info = std::move(info);
  st.plane = std::move(plane);
  st.supervisor = supervisor;
  st.sink = sink;
  auto save = [self] {
    self->send(self->state.supervisor, atom::checkpoint::value, ChildKind::mirror,
               std::uint64_t{self->state.info.vm}, caf::make_message(self->state.info));
  };
  auto complain = [self](const std::string& what) {
    LogEvent e;
    e.text = "error: mirror " + self->state.info.path + ": " + what;
    self->send(self->state.sink, atom::event::value, std::move(e));
  };
  // Without a data path the file stands for the mirror, at its full size.
  if (!st.plane)
    if (auto err = size_file(st.info.path, st.info.mib); !err.empty()) complain(err);
  save();
  return {
      [=](atom::resize, std::int64_t mib) {
        self->state.info.mib = mib;
        if (!self->state.plane)
          if (auto err = size_file(self->state.info.path, mib); !err.empty()) complain(err);
        save();
      },
      [=](atom::failover, std::uint32_t) {
        self->state.info.state = MirrorState::serving;
        save();
      },
      [=](atom::remove) {
        if (auto plane = self->state.plane) {
          // After the regions' own jobs, which the plane runs in order.
          std::string vm = std::filesystem::path(self->state.info.path).stem().string();
          plane->post([plane, vm] { plane->remove_mirror(vm); });
        } else if (::unlink(self->state.info.path.c_str()) != 0 && errno != ENOENT) {
          complain(std::strerror(errno));
        }
        self->state.info.state = MirrorState::deleted;
        save();
        self->quit();
      },
      [=](atom::get) { return self->state.info; },
  };
}

}  // namespace memlend
