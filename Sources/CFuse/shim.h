// Shim for libfuse3's low-level API. Swift cannot call function-like macros
// (fuse_session_loop_mt) nor build fuse_bufvec with FUSE_BUFVEC_INIT, so the
// few helpers the mount layer needs live here as static inline functions.
#ifndef REPLICAFS_CFUSE_SHIM_H
#define REPLICAFS_CFUSE_SHIM_H

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <sys/prctl.h>
#include <stdlib.h>

/// Runs the multi-threaded session loop with an explicit thread configuration.
static inline int rfs_session_loop_mt(struct fuse_session *se, int clone_fd,
                                      unsigned int max_idle, unsigned int max_threads) {
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (cfg == NULL) return -1;
    fuse_loop_cfg_set_clone_fd(cfg, clone_fd);
    fuse_loop_cfg_set_idle_threads(cfg, max_idle);
    fuse_loop_cfg_set_max_threads(cfg, max_threads);
    int rc = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return rc;
}

/// Replies to a READ with `size` bytes of `fd` at `off`, letting libfuse splice when it can.
static inline int rfs_reply_fd(fuse_req_t req, int fd, off_t off, size_t size) {
    struct fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
    buf.buf[0].flags = (enum fuse_buf_flags)(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    buf.buf[0].fd = fd;
    buf.buf[0].pos = off;
    return fuse_reply_data(req, &buf, FUSE_BUF_SPLICE_MOVE);
}

/// Builds a session from an argv-style option list (argv[0] is the program name).
static inline struct fuse_session *rfs_session_new(int argc, char **argv,
                                                   const struct fuse_lowlevel_ops *ops,
                                                   void *userdata) {
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    struct fuse_session *se = fuse_session_new(&args, ops, sizeof(*ops), userdata);
    fuse_opt_free_args(&args);
    return se;
}

/// Marks this process as one that flushes I/O (it may serve a loop device), so memory
/// reclaim does not wait on it and deadlock. Returns 0 or -1 with errno.
static inline int rfs_set_io_flusher(void) {
#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif
    return prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0);
}

#endif
