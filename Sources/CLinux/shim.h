// Linux calls that Swift's Glibc module hides (GNU extensions) or cannot name
// (functions that share their name with a struct).
#ifndef REPLICAFS_CLINUX_SHIM_H
#define REPLICAFS_CLINUX_SHIM_H
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/file.h>
#include <linux/falloc.h>
#include "crc32c.h"

extern int fallocate(int fd, int mode, off_t offset, off_t len);
extern int sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags);

extern int memfd_create(const char *name, unsigned int flags);
/// An anonymous file in memory (MFD_CLOEXEC): plaintext that must never reach a disk.
static inline int rfs_memfd_create(const char *name) { return memfd_create(name, 1u); }
static inline int rfs_fallocate(int fd, int mode, off_t offset, off_t len) { return fallocate(fd, mode, offset, len); }
static inline int rfs_stat(const char *path, struct stat *st) { return stat(path, st); }
static inline int rfs_lstat(const char *path, struct stat *st) { return lstat(path, st); }
static inline int rfs_flock(int fd, int op) { return flock(fd, op); }
/// Starts writeback of the dirty pages in the range without waiting for it (SYNC_FILE_RANGE_WRITE).
static inline int rfs_start_writeback(int fd, off_t offset, off_t nbytes) { return sync_file_range(fd, offset, nbytes, 2); }

static const long RFS_UTIME_NOW = ((1l << 30) - 1l);
static const long RFS_UTIME_OMIT = ((1l << 30) - 2l);
#if defined(__aarch64__) || defined(__arm__)
static const int RFS_O_DIRECT = 0200000;
#else
static const int RFS_O_DIRECT = 040000;
#endif
static const int RFS_SEEK_DATA = 3;
static const int RFS_SEEK_HOLE = 4;
static const int RFS_FALLOC_KEEP_SIZE = FALLOC_FL_KEEP_SIZE;
static const int RFS_FALLOC_PUNCH_HOLE = FALLOC_FL_PUNCH_HOLE;
static const int RFS_FALLOC_ZERO_RANGE = FALLOC_FL_ZERO_RANGE;
#endif
