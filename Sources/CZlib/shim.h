#ifndef REPLICAFS_CZLIB_SHIM_H
#define REPLICAFS_CZLIB_SHIM_H
#include <zlib.h>
#endif
