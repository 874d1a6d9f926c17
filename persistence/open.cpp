// Opening a database: nothing is written until the file is known to be
// memlend's, intact and of a schema this binary knows, so a file that is
// refused is left exactly as it was.
#include "persistence/schema.hpp"
#include "persistence/store_impl.hpp"

#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace memlend::store {

std::string failure_message(const std::string& path, int rc, const std::string& detail) {
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return path + ": the disk is full (" + detail + "); free space on the filesystem that holds it";
    case SQLITE_READONLY:
    case SQLITE_PERM:
      return path + ": cannot write the database (" + detail +
             "); memlend needs write access to it and to its directory";
    case SQLITE_CORRUPT:
      return path + ": the database is damaged (" + detail +
             "); restore it from a backup, or move it and its -wal file away to start empty, "
             "which forgets every lease it recorded";
    case SQLITE_NOTADB:
      return path + ": not an SQLite database, or its first page is damaged (" + detail +
             "); pass memlend's database with --db, or move this file away";
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return path + ": another program holds a lock on it (" + detail +
             "); close it (an sqlite3 shell in a transaction, for instance)";
    case SQLITE_CANTOPEN:
      return path + ": cannot open it (" + detail + "); check the path and its directory's permissions";
    case SQLITE_IOERR:
      return path + ": cannot read or write the database (" + detail + "); check the disk and the filesystem";
    case SQLITE_PROTOCOL:  // a replicated store's leader lost (cursor.cpp)
      return path + ": lost the cluster's leader (" + detail + ")";
    default:
      return path + ": " + detail;
  }
}

namespace {

constexpr const char* left_alone = "; the file was left as it is";

std::string errno_text() { return std::strerror(errno); }

std::string directory_of(const std::string& path) {
  auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// SQLite URIs take the path percent-encoded; every other byte is escaped.
std::string file_uri(const std::string& path, const char* query) {
  std::string out = "file:";
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '/' || c == '.' || c == '_' || c == '-' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out + query;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// A non-empty file that does not start with SQLite's magic is someone else's.
Expected<void> check_magic(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error{path + ": cannot read it (" + errno_text() + ")"};
  char head[16] = {};
  ssize_t n = ::read(fd, head, sizeof head);
  ::close(fd);
  static const char magic[16] = {'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f', 'o', 'r', 'm', 'a', 't', ' ', '3', '\0'};
  if (n == static_cast<ssize_t>(sizeof head) && std::memcmp(head, magic, sizeof magic) == 0) return {};
  return Error{path + ": not an SQLite database (it does not begin with \"SQLite format 3\"); pass memlend's " +
               "database with --db, or move this file away to start a new one" + left_alone};
}

struct Scalar {
  int rc = SQLITE_OK;
  std::int64_t value = 0;
};

Scalar scalar(sqlite3* db, const char* text) {
  sql::Statement s;
  Scalar out;
  if ((out.rc = s.prepare(db, text)) != SQLITE_OK) return out;
  sql::Cursor c(s);
  int rc = c.step();
  if (rc == SQLITE_ROW) out.value = c.int64(0);
  out.rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
  return out;
}

// Every row of a PRAGMA that reports problems; `ok` alone means none.
std::vector<std::string> report(sqlite3* db, const char* text, int* rc_out) {
  std::vector<std::string> lines;
  sql::Statement s;
  *rc_out = s.prepare(db, text);
  if (*rc_out != SQLITE_OK) return lines;
  sql::Cursor c(s);
  int rc;
  while ((rc = c.step()) == SQLITE_ROW) {
    std::string line;
    for (int i = 0; i < c.columns(); ++i) {
      if (i) line += ' ';
      line += c.text(i);
    }
    lines.push_back(line);
  }
  *rc_out = rc == SQLITE_DONE ? SQLITE_OK : rc;
  return lines;
}

std::string join(const std::vector<std::string>& lines, std::size_t most) {
  std::string out;
  for (std::size_t i = 0; i < lines.size() && i < most; ++i) out += (i ? "; " : "") + lines[i];
  if (lines.size() > most) out += "; ...";
  return out;
}

int exec_all(sqlite3* db, const std::string& text) { return sql::exec(db, text.c_str()); }



Expected<sql::Connection> connect(const std::string& path, Access access, std::chrono::milliseconds busy) {
  int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE | SQLITE_OPEN_URI;
  std::string uri;
  if (access == Access::read_only) {
    // Without a -wal no controller is running and everything is in the main
    // file: `immutable` reads it without creating -wal or -shm files.
    flags |= SQLITE_OPEN_READONLY;
    uri = file_uri(path, exists(path + "-wal") ? "?mode=ro" : "?immutable=1");
  } else {
    flags |= SQLITE_OPEN_READWRITE;
    uri = file_uri(path, "");
  }
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(uri.c_str(), &raw, flags, nullptr);
  sql::Connection c(raw);
  if (rc != SQLITE_OK) return Error{failure_message(path, rc, c.error()) + left_alone};
  // Until the file has passed every check, closing must not checkpoint into it.
  sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  sqlite3_busy_timeout(raw, static_cast<int>(busy.count()));
  if (access == Access::read_write && sqlite3_db_readonly(raw, "main") == 1)
    return Error{path + ": cannot write the database (the file or its filesystem is read-only); memlend " +
                 "needs write access to it and to its directory" + left_alone};
  return Expected<sql::Connection>(std::move(c));
}

// Is it memlend's, of a schema this binary knows, and intact? Reads only.
// The schema version, 0 for a new empty file.
Expected<std::int64_t> inspect(sqlite3* db, const std::string& path, int known, bool read_only) {
  auto failed = [&](int rc) { return Error{failure_message(path, rc, sql::Connection::describe(db)) + left_alone}; };
  Scalar objects = scalar(db, "SELECT count(*) FROM sqlite_schema");
  if (objects.rc != SQLITE_OK) return failed(objects.rc);
  Scalar app = scalar(db, "PRAGMA application_id");
  if (app.rc != SQLITE_OK) return failed(app.rc);
  Scalar version = scalar(db, "PRAGMA user_version");
  if (version.rc != SQLITE_OK) return failed(version.rc);

  bool fresh = objects.value == 0 && app.value == 0 && version.value == 0;
  if (fresh && read_only)
    return Error{path + ": empty: memlend has written nothing to it yet; pass the controller's database with --db"};
  if (fresh) return std::int64_t{0};
  if (app.value != application_id) {
    if (app.value != 0) {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%08llx", static_cast<unsigned long long>(app.value & 0xffffffffLL));
      return Error{path + ": an SQLite database of another program (application_id " + hex +
                   "), not memlend's; pass memlend's database with --db" + left_alone};
    }
    return Error{path + ": an SQLite database, but not memlend's (it has no memlend application_id); " +
                 "pass memlend's database with --db" + left_alone};
  }
  if (version.value > known)
    return Error{path + ": written by a newer memlend (schema version " + std::to_string(version.value) +
                 "; this memlend knows versions up to " + std::to_string(known) +
                 "); run that memlend or a newer one, or restore a backup made by this version" + left_alone};
  if (version.value <= 0)
    return Error{failure_message(path, SQLITE_CORRUPT, "memlend's application_id but no schema version") +
                 left_alone};
  if (objects.value == 0)
    return Error{failure_message(path, SQLITE_CORRUPT,
                                 "memlend's application_id and schema version " + std::to_string(version.value) +
                                     " but none of memlend's tables") +
                 left_alone};
  int rc = SQLITE_OK;
  auto problems = report(db, "PRAGMA integrity_check(20)", &rc);
  if (rc != SQLITE_OK) return failed(rc);
  if (!(problems.size() == 1 && problems[0] == "ok"))
    return Error{failure_message(path, SQLITE_CORRUPT, "integrity_check: " + join(problems, 3)) + left_alone};
  auto dangling = report(db, "PRAGMA foreign_key_check", &rc);
  if (rc != SQLITE_OK) return failed(rc);
  if (!dangling.empty())
    return Error{failure_message(path, SQLITE_CORRUPT,
                                 std::to_string(dangling.size()) +
                                     " rows refer to rows that are not there (table rowid parent): " +
                                     join(dangling, 3)) +
                 left_alone};
  return version.value;
}

}  // namespace

// Written under a temporary name (0600: the copy holds what the store
// holds) and renamed once synced, never over an existing file, so a copy that
// did not finish never looks like one that did. SQLite's backup copies the
// pages in one step through the connection, so the copy is one snapshot and
// what a -wal holds is in it too; unlike VACUUM INTO, it works from a
// read-only connection (`memlend state --export`).
Expected<void> write_copy(sqlite3* db, const std::string& name) {
  const std::string partial = name + ".partial";
  auto failed = [&](const std::string& detail) -> Error {
    ::unlink(partial.c_str());
    return Error{detail};
  };
  if (exists(name)) return Error{name + " exists"};
  if (::unlink(partial.c_str()) != 0 && errno != ENOENT) return Error{partial + ": " + errno_text()};
  int fd = ::open(partial.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  // Where it cannot be made, the copy cannot be either: said of the copy.
  if (fd < 0) return Error{name + ": " + errno_text()};
  ::close(fd);
  sqlite3* out = nullptr;
  int rc = sqlite3_open_v2(partial.c_str(), &out, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_backup* b = sqlite3_backup_init(out, "main", db, "main");
    if (b) {
      rc = sqlite3_backup_step(b, -1);
      int finished = sqlite3_backup_finish(b);
      rc = rc == SQLITE_DONE ? finished : rc;
      // One file, as a copy handed around should be: no -wal beside it.
      if (rc == SQLITE_OK) rc = exec_all(out, "PRAGMA journal_mode = DELETE");
    } else {
      rc = sqlite3_errcode(out);
    }
  }
  std::string why = rc == SQLITE_OK ? std::string() : sql::Connection::describe(out ? out : db);
  sqlite3_close_v2(out);
  if (rc != SQLITE_OK) return failed(why);
  fd = ::open(partial.c_str(), O_RDONLY | O_CLOEXEC);
  bool synced = fd >= 0 && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  if (!synced) return failed(partial + ": " + errno_text());
  if (::renameat2(AT_FDCWD, partial.c_str(), AT_FDCWD, name.c_str(), RENAME_NOREPLACE) != 0)
    return failed(name + ": " + errno_text());
  int dfd = ::open(directory_of(name).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

namespace {

// A copy of the file as it is, beside it and named with its schema version
// (memlend.db.v3.bak), made before a migration touches it: a migrated file
// cannot be opened by the memlend it came from, and the copy can. The copy's
// path, or why not.
Expected<std::string> copy_before_migrating(sqlite3* db, const std::string& path, std::int64_t from) {
  std::string name = path + ".v" + std::to_string(from) + ".bak";
  // An older copy of the same version is an operator's to remove, never ours.
  if (exists(name)) name = path + ".v" + std::to_string(from) + "-" + std::to_string(unix_ms_now() / 1000) + ".bak";
  auto copied = write_copy(db, name);
  if (!copied)
    return Error{path + ": cannot copy it to " + name + " before migrating from schema version " +
                 std::to_string(from) + " (" + copied.error().message + "); free space beside it or give memlend " +
                 "write access to its directory" + left_alone};
  return name;
}

// Runs every migration above `from` in one transaction, so that a file is
// either at the newest version or exactly as it was. Foreign keys are off
// while migrating (a table rebuild needs that) and checked before commit.
Expected<std::int64_t> migrate(sqlite3* db, const std::string& path, const std::vector<Migration>& migrations,
                               std::int64_t from) {
  std::int64_t to = from;
  std::string script = migration_script(migrations, from, to);
  if (to == from) return from;
  std::string copy;
  auto failed = [&](int rc, const std::string& detail) {
    if (!sqlite3_get_autocommit(db)) sql::exec(db, "ROLLBACK");
    // The file is as it was, so the copy is one of it: it goes too.
    if (!copy.empty()) ::unlink(copy.c_str());
    return Error{failure_message(path, rc, detail) + " (migrating from schema version " + std::to_string(from) +
                 " to " + std::to_string(to) + ")" + left_alone};
  };
  if (from > 0) {
    auto copied = copy_before_migrating(db, path, from);
    if (!copied) return copied.error();
    copy = *copied;
    log(LogLevel::notice, path + ": copied to " + copy + " (schema version " + std::to_string(from) +
                              ") before migrating it");
  }
  int rc = sql::exec(db, "BEGIN IMMEDIATE");
  if (rc != SQLITE_OK) return failed(rc, sql::Connection::describe(db));
  rc = exec_all(db, script);
  if (rc != SQLITE_OK) return failed(rc, sql::Connection::describe(db));
  auto dangling = report(db, "PRAGMA foreign_key_check", &rc);
  if (rc != SQLITE_OK) return failed(rc, sql::Connection::describe(db));
  if (!dangling.empty()) return failed(SQLITE_CONSTRAINT, "rows refer to rows that are not there: " + join(dangling, 3));
  rc = sql::exec(db, "COMMIT");
  if (rc != SQLITE_OK) return failed(rc, sql::Connection::describe(db));
  if (from > 0)
    log(LogLevel::notice, path + ": migrated from schema version " + std::to_string(from) + " to " +
                              std::to_string(to) + "; the file as it was is " + copy);
  return to;
}

}  // namespace

Expected<void> Store::Impl::prepare_statements() {
  stmts.clear();
  stmts.resize(static_cast<std::size_t>(Sql::count_));
  for (const auto& t : statement_texts()) {
    if ((t.write && !writable()) || t.since > schema_version) continue;
    int rc = stmts[static_cast<std::size_t>(t.id)].prepare(db.get(), t.sql);
    if (rc != SQLITE_OK)
      return Error{failure_message(path, rc, db.error() + " preparing \"" + std::string(t.sql).substr(0, 60) + "\"")};
  }
  return {};
}

Expected<std::unique_ptr<Store>> Store::open(const std::string& path, const Options& options) {
  install_sqlite_log();
  if (path.empty()) return Error{"--db: no path given; pass the database's path"};
  const auto& migrations = options.migrations ? *options.migrations : builtin_migrations();
  const int known = migrations.empty() ? 0 : migrations.back().to_version;
  const bool read_only = options.access == Access::read_only;

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->options = options;

  struct stat st;
  bool found = ::stat(path.c_str(), &st) == 0;
  if (!found && errno != ENOENT) return Error{path + ": cannot reach it (" + errno_text() + ")"};
  if (found && !S_ISREG(st.st_mode))
    return Error{path + ": not a regular file; pass the path of memlend's database file"};
  if (!found && read_only)
    return Error{path + ": no such database; pass the controller's database with --db (memlend run " +
                 "keeps it in " + default_db_path + " in its working directory unless told otherwise)"};
  // In WAL mode an empty main file is valid (its pages may all be in the -wal).
  if (found && st.st_size > 0)
    if (auto magic = check_magic(path); !magic) return magic.error();

  bool created = false;
  if (!read_only) {
    if (found && ::access(path.c_str(), R_OK | W_OK) != 0)
      return Error{path + ": cannot write the database (" + errno_text() +
                   "); memlend needs write access to it and to its directory" + left_alone};
    std::string dir = directory_of(path);
    if (::access(dir.c_str(), W_OK) != 0)
      return Error{path + ": cannot write its directory " + dir + " (" + errno_text() +
                   "); memlend keeps the -wal, -shm and -lock files beside the database"};
    auto lock = FileLock::acquire(path);
    if (!lock) return lock.error();
    impl->lock = std::move(*lock);
    if (!found) {
      // Made here with 0600: SQLite gives its -wal and -shm the main file's mode.
      int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0) return Error{path + ": cannot create the database (" + errno_text() + ")"};
      ::close(fd);
      created = true;
      int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (dfd >= 0) {
        ::fsync(dfd);  // the new name survives a power cut
        ::close(dfd);
      }
    }
  }

  // Leaves nothing behind that this call made; a file that was there stays as it was.
  const bool had_wal = exists(path + "-wal");
  auto refuse = [&](std::string message) -> Error {
    impl->stmts.clear();
    // Nothing was committed, so a checkpoint at close changes nothing in the
    // file and removes the -wal and -shm this call made; a -wal that was
    // there before (a crashed controller's) is left for the next start.
    if (impl->db && !had_wal) sqlite3_db_config(impl->db.get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, nullptr);
    impl->db.close();
    if (created)
      for (const char* suffix : {"", "-wal", "-shm"}) ::unlink((path + suffix).c_str());
    return Error{std::move(message)};
  };

  // The checks run on a read-only connection, so a file that fails them is
  // not touched at all (not even given -wal and -shm files).
  auto checked = connect(path, Access::read_only, options.busy_timeout);
  if (!checked) return refuse(checked.error().message);
  auto inspected = inspect(checked->get(), path, known, read_only);
  if (!inspected) return refuse(inspected.error().message);
  Scalar version{SQLITE_OK, *inspected};
  if (read_only) {
    impl->db = std::move(*checked);
  } else {
    checked->close();
    // A file that passed is memlend's: others may not read it. SQLite gives
    // the -wal and -shm it makes the main file's mode.
    if (found && (st.st_mode & 077) != 0) {
      for (const char* suffix : {"", "-wal", "-shm"})
        if (exists(path + suffix)) ::chmod((path + suffix).c_str(), 0600);
      log(LogLevel::notice, path + ": others could read it; its mode is now 0600");
    }
    auto rw = connect(path, Access::read_write, options.busy_timeout);
    if (!rw) return refuse(rw.error().message);
    impl->db = std::move(*rw);
  }
  sqlite3* db = impl->db.get();
  int rc = SQLITE_OK;

  if (read_only) {
    sql::exec(db, "PRAGMA trusted_schema = OFF; PRAGMA query_only = ON");
  } else {
    rc = sql::exec(db,
                   "PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF; PRAGMA trusted_schema = OFF; "
                   "PRAGMA cell_size_check = ON; PRAGMA journal_size_limit = 67108864; PRAGMA temp_store = MEMORY");
    if (rc != SQLITE_OK) return refuse(failure_message(path, rc, impl->db.error()));
    auto migrated = migrate(db, path, migrations, version.value);
    if (!migrated) return refuse(migrated.error().message);
    version.value = *migrated;
    // Before the switch to WAL, which rewrites the header: a schema that lacks
    // a table the statements need is refused with the file as it was.
    impl->schema_version = static_cast<int>(version.value);
    if (auto ok = impl->prepare_statements(); !ok) return refuse(ok.error().message);
    // WAL only now, so that a refused file is not even switched to it. FULL:
    // in WAL mode NORMAL does not fsync the WAL at commit, and a power cut
    // could lose a transition that was acknowledged and acted on.
    Scalar wal = scalar(db, "PRAGMA journal_mode = WAL");
    if (wal.rc != SQLITE_OK) return refuse(failure_message(path, wal.rc, impl->db.error()));
    rc = sql::exec(db, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON");
    if (rc != SQLITE_OK) return refuse(failure_message(path, rc, impl->db.error()));
  }
  impl->schema_version = static_cast<int>(version.value);
  if (read_only)
    if (auto ok = impl->prepare_statements(); !ok) return refuse(ok.error().message);
  if (impl->writable()) {
    sql::Statement steps;
    rc = steps.prepare(db, "SELECT from_state, to_state FROM lease_transitions");
    if (rc != SQLITE_OK) return refuse(failure_message(path, rc, impl->db.error()));
    sql::Cursor c(steps);
    while ((rc = c.step()) == SQLITE_ROW) impl->lease_steps.emplace(c.text(0), c.text(1));
    if (rc != SQLITE_DONE) return refuse(failure_message(path, rc, impl->db.error()));
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, nullptr);
    impl->start_writer();
  }
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

void Store::Impl::start_writer() {
  writer = std::thread([this] {
    // Stop signals are for the controller's main thread, which ends the run
    // in order; a writer thread that took SIGTERM would die with its default
    // action in the middle of a group commit.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    run_writer();
  });
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Store::~Store() = default;

Store::Impl::~Impl() {
  stop_writer();
  std::lock_guard<std::mutex> g(db_mutex);
  if (db && writable() && broken.empty()) sql::exec(db.get(), "PRAGMA optimize");
  // After an I/O error the file is left for the next start's recovery to judge.
  if (db && !broken.empty()) sqlite3_db_config(db.get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  stmts.clear();
  // A clean close checkpoints the WAL into the main file and removes it.
  db.close();
}

const std::string& Store::path() const { return impl_->path; }
int Store::schema_version() const { return impl_->schema_version; }

Stats Store::stats() const {
  std::lock_guard<std::mutex> g(impl_->queue_mutex);
  return impl_->stats;
}

bool Store::recording() const {
  std::lock_guard<std::mutex> g(impl_->queue_mutex);
  return impl_->broken.empty();
}

}  // namespace memlend::store
