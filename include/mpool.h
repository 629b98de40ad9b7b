/* libmpool: Python's multiprocessing for C programs on Linux.
 * The only header users include. */
#ifndef MPOOL_H
#define MPOOL_H

#define MPOOL_VERSION_MAJOR 1
#define MPOOL_VERSION_MINOR 0
#define MPOOL_VERSION_PATCH 0

#include "mpool/error.h"
#include "mpool/shm.h"
#include "mpool/process.h"
#include "mpool/sync.h"
#include "mpool/conn.h"
#include "mpool/queue.h"
#include "mpool/pool.h"

#endif
