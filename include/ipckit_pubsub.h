/*
 * ipckit_pubsub.h: a C peer of ipckit's publish-subscribe over shared memory (`shm.publisher` / `shm.subscriber`),
 * in one header, on top of ipckit_ring.h (its atomics, futex, liveness and error helpers).
 *
 * A C process that includes it is a full peer: it subscribes to a segment an ipckit process (or another C or
 * Python peer) publishes on, or publishes on one that they subscribe to, with either policy ("block": the
 * publisher waits for the slowest live subscriber; "overwrite": a subscriber that fell a ring behind gets -ESTALE
 * once, with the count of messages it missed, and goes on from the oldest message still there). Linux only.
 *
 * The layout is ipckit's pub-sub layout version 1, byte for byte as documented in `shm/pubsub_layout.ts`: a
 * 256-byte header, N subscriber slots of 64 bytes, an index of K record positions, then the data ring of records
 * (16-byte header: length, commit word = position + 1, sequence number, 0; then the bytes; 8-aligned). A segment
 * of another version is refused with -EPROTONOSUPPORT before anything else is read from it. Everything in the
 * segment is treated as hostile: lengths, positions and slots are checked, nothing is read outside the mapping;
 * a corrupt segment is -EPROTO.
 *
 *   #include "ipckit_pubsub.h"
 *   ipckit_pubsub sub;
 *   if (ipckit_pubsub_subscribe(&sub, "/news", 0, 5000) < 0) { fprintf(stderr, "%s\n", sub.error); return 1; }
 *   char buf[65536];
 *   for (;;) {
 *     ssize_t n = ipckit_pubsub_receive(&sub, buf, sizeof buf, -1); // -EPIPE once the publisher closed
 *     if (n == -ESTALE) continue;                                   // lagged: sub.missed messages were lost
 *     if (n < 0) break;
 *     ...
 *   }
 *   ipckit_pubsub_close(&sub);
 *
 * Errors are negative errno values: -EAGAIN (nothing now / no room now), -ETIMEDOUT, -EPIPE (the publisher closed
 * and everything was received), -EOWNERDEAD (the publisher died; what it completed was received), -ESTALE
 * (lagged), -EMSGSIZE, -EPROTO, -EPROTONOSUPPORT, -EBUSY (no free subscriber slot), -ENOENT, -EEXIST.
 */
#ifndef IPCKIT_PUBSUB_H
#define IPCKIT_PUBSUB_H

#include "ipckit_ring.h"

#define IPCKIT_PUBSUB_MAGIC 0x53505049u /* "IPPS" */
#define IPCKIT_PUBSUB_VERSION 1u
#define IPCKIT_PUBSUB_HEADER 256u
#define IPCKIT_PUBSUB_SLOT 64u
#define IPCKIT_PUBSUB_RECORD_HEADER 16u
#define IPCKIT_PUBSUB_MAX_SLOTS 1024u
#define IPCKIT_PUBSUB_MAX_HISTORY 65536u

enum {
  IPCKIT_PUBSUB__MAGIC = 0,
  IPCKIT_PUBSUB__VERSION = 4,
  IPCKIT_PUBSUB__CAPACITY = 8,
  IPCKIT_PUBSUB__SLOTS = 12,
  IPCKIT_PUBSUB__INDEX = 16,
  IPCKIT_PUBSUB__POLICY = 20,
  IPCKIT_PUBSUB__HISTORY = 24,
  IPCKIT_PUBSUB__FLAGS = 28,
  IPCKIT_PUBSUB__PUB_ID = 32,
  IPCKIT_PUBSUB__PUB_TAG = 36,
  IPCKIT_PUBSUB__SLOT_LIMIT = 40,
  IPCKIT_PUBSUB__WRITE = 64,
  IPCKIT_PUBSUB__SEQ = 68,
  IPCKIT_PUBSUB__SLEEPERS = 72,
  IPCKIT_PUBSUB__TAIL = 128,
  IPCKIT_PUBSUB__TAIL_SEQ = 132,
  IPCKIT_PUBSUB__PUB_SLEEPING = 136,
  IPCKIT_PUBSUB__PROGRESS = 140,
  /* Offsets in a slot. */
  IPCKIT_PUBSUB__S_STATE = 0,
  IPCKIT_PUBSUB__S_ID = 4,
  IPCKIT_PUBSUB__S_TAG = 8,
  IPCKIT_PUBSUB__S_READ = 12,
  IPCKIT_PUBSUB__S_SEQ = 16,
  IPCKIT_PUBSUB__S_SLEEPING = 20,
  IPCKIT_PUBSUB__S_GEN = 24
};

#define IPCKIT_PUBSUB_BLOCK 0u
#define IPCKIT_PUBSUB_OVERWRITE 1u

/* One publisher or subscriber. Its fields are private except `error` and `missed`. */
typedef struct ipckit_pubsub {
  unsigned char *base;
  size_t size;
  unsigned char *slots;
  unsigned char *index;
  unsigned char *data;
  uint32_t capacity, mask, nslots, nindex, policy, history, max_message;
  int publisher;
  int closed;
  /* Publisher: W, T, tail sequence, next sequence. Subscriber: R, next sequence, slot, generation. */
  uint32_t w, t, tseq, seq;
  uint32_t r, slot, gen;
  /* After -ESTALE: how many messages were missed. */
  uint32_t missed;
  char name[256];
  char error[320];
} ipckit_pubsub;

static inline unsigned char *ipckit_pubsub__h(ipckit_pubsub *p, uint32_t off) {
  return p->base + off;
}
static inline uint32_t ipckit_pubsub__ld(ipckit_pubsub *p, uint32_t off) {
  return ipckit_shm__load(p->base + off, memory_order_seq_cst);
}
static inline void ipckit_pubsub__st(ipckit_pubsub *p, uint32_t off, uint32_t v) {
  ipckit_shm__store(p->base + off, v, memory_order_seq_cst);
}
static inline unsigned char *ipckit_pubsub__slot(ipckit_pubsub *p, uint32_t i, uint32_t field) {
  return p->slots + (size_t)i * IPCKIT_PUBSUB_SLOT + field;
}
/* Word k (0-3) of the record header at position pos. */
static inline unsigned char *ipckit_pubsub__word(ipckit_pubsub *p, uint32_t pos, uint32_t k) {
  return p->data + ((pos + 4u * k) & p->mask);
}
static inline uint32_t ipckit_pubsub__record_size(uint32_t n) {
  return (IPCKIT_PUBSUB_RECORD_HEADER + n + 7u) & ~7u;
}

static inline int ipckit_pubsub__fail(ipckit_pubsub *p, int code, const char *what) {
  snprintf(p->error, sizeof p->error, "Cannot %s pub-sub \"%s\": %s", what, p->name, ipckit_shm_strerror(code));
  return -code;
}

/* The geometry of a header: index entries and the data offset (the data area of `capacity` bytes follows). */
static inline void ipckit_pubsub__geometry(uint32_t slots, uint32_t history, uint32_t *index, size_t *data_at) {
  uint32_t k = 2;
  while (k < history + 2) k *= 2;
  *index = k;
  size_t index_at = IPCKIT_PUBSUB_HEADER + (size_t)IPCKIT_PUBSUB_SLOT * slots;
  *data_at = (index_at + 4u * (size_t)k + 63u) / 64u * 64u;
}

/* Maps the segment and checks its header (the subscriber's side). */
static inline int ipckit_pubsub__map(ipckit_pubsub *p, const char *name) {
  int fd = shm_open(name, O_RDWR, 0);
  if (fd < 0) return -errno;
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < (off_t)IPCKIT_PUBSUB_HEADER) {
    close(fd);
    return -EPROTO;
  }
  p->size = (size_t)st.st_size;
  void *m = mmap(NULL, p->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return -errno;
  p->base = (unsigned char *)m;
  if (ipckit_pubsub__ld(p, IPCKIT_PUBSUB__MAGIC) != IPCKIT_PUBSUB_MAGIC) return -EPROTO;
  if (ipckit_pubsub__ld(p, IPCKIT_PUBSUB__VERSION) != IPCKIT_PUBSUB_VERSION) return -EPROTONOSUPPORT;
  uint32_t c = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__CAPACITY);
  uint32_t n = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__SLOTS);
  uint32_t h = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__HISTORY);
  uint32_t pol = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__POLICY);
  if (!ipckit_shm__capacity_ok(c) || n < 1 || n > IPCKIT_PUBSUB_MAX_SLOTS || h > IPCKIT_PUBSUB_MAX_HISTORY || pol > 1) {
    return -EPROTO;
  }
  uint32_t k;
  size_t data_at;
  ipckit_pubsub__geometry(n, h, &k, &data_at);
  if (ipckit_pubsub__ld(p, IPCKIT_PUBSUB__INDEX) != k || data_at + c > p->size) return -EPROTO;
  p->capacity = c;
  p->mask = c - 1;
  p->nslots = n;
  p->nindex = k;
  p->history = h;
  p->policy = pol;
  p->max_message = c - IPCKIT_PUBSUB_RECORD_HEADER;
  p->slots = p->base + IPCKIT_PUBSUB_HEADER;
  p->index = p->slots + (size_t)IPCKIT_PUBSUB_SLOT * n;
  p->data = p->base + data_at;
  return 0;
}

static inline void ipckit_pubsub__unmap(ipckit_pubsub *p) {
  if (p->base != NULL) munmap(p->base, p->size);
  p->base = NULL;
}

/* Frees slot i if it still holds generation gen. */
static inline void ipckit_pubsub__drop(ipckit_pubsub *p, uint32_t i, uint32_t gen) {
  if (ipckit_shm__load(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_GEN), memory_order_seq_cst) != gen) return;
  if (atomic_exchange(ipckit_shm__word(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_SLEEPING)), 0u) == 1u) {
    atomic_fetch_sub(ipckit_shm__word(ipckit_pubsub__h(p, IPCKIT_PUBSUB__SLEEPERS)), 1u);
  }
  ipckit_shm__store(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_ID), 0, memory_order_seq_cst);
  uint32_t state = ipckit_shm__load(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_STATE), memory_order_seq_cst);
  if (state != 0) {
    atomic_compare_exchange_strong(ipckit_shm__word(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_STATE)), &state, 0u);
  }
}

static inline uint32_t ipckit_pubsub__slot_limit(ipckit_pubsub *p) {
  uint32_t n = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__SLOT_LIMIT);
  return n > p->nslots ? p->nslots : n;
}

/* Frees the slots of dead subscribers; returns how many live active ones remain. */
static inline uint32_t ipckit_pubsub__sweep(ipckit_pubsub *p) {
  uint32_t live = 0, limit = ipckit_pubsub__slot_limit(p);
  for (uint32_t i = 0; i < limit; i++) {
    uint32_t state = ipckit_shm__load(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_STATE), memory_order_seq_cst);
    if (state == 0) continue;
    uint32_t gen = ipckit_shm__load(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_GEN), memory_order_seq_cst);
    uint32_t id = ipckit_shm__load(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_ID), memory_order_seq_cst);
    uint32_t tag = ipckit_shm__load(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_TAG), memory_order_seq_cst);
    if (id > 0 && ipckit_shm_alive(id, tag)) {
      if (state == 2) live++;
    } else if (state == 2 || id > 0) {
      ipckit_pubsub__drop(p, i, gen);
    }
  }
  return live;
}

/* ---- subscriber ---- */

/* Places a new subscriber `history` records back; 0, or -EPROTO. */
static inline int ipckit_pubsub__place(ipckit_pubsub *p, uint32_t history) {
  uint32_t kmask = p->nindex - 1;
  for (uint32_t attempt = 0; attempt < 100000u; attempt++) {
    uint32_t s = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__SEQ);
    uint32_t base = ipckit_shm__load(p->index + 4u * (s & kmask), memory_order_seq_cst);
    if (ipckit_pubsub__ld(p, IPCKIT_PUBSUB__SEQ) != s) continue;
    uint32_t behind = s - ipckit_pubsub__ld(p, IPCKIT_PUBSUB__TAIL_SEQ);
    uint32_t h = attempt > 50 ? 0 : history;
    if (h > p->nindex - 2) h = p->nindex - 2;
    if (h > behind) h = behind;
    uint32_t s0 = s - h, pos = base;
    if (h > 0) {
      pos = ipckit_shm__load(p->index + 4u * (s0 & kmask), memory_order_seq_cst);
      if (ipckit_shm__load(ipckit_pubsub__word(p, pos, 1), memory_order_seq_cst) != pos + 1u ||
          ipckit_shm__load(ipckit_pubsub__word(p, pos, 2), memory_order_relaxed) != s0 ||
          ipckit_pubsub__ld(p, IPCKIT_PUBSUB__SEQ) - s > p->nindex - 2) {
        continue;
      }
    }
    if ((pos & 7u) != 0) return -EPROTO;
    p->r = pos;
    p->seq = s0;
    ipckit_shm__store(ipckit_pubsub__slot(p, p->slot, IPCKIT_PUBSUB__S_SEQ), s0, memory_order_seq_cst);
    ipckit_shm__store(ipckit_pubsub__slot(p, p->slot, IPCKIT_PUBSUB__S_READ), pos, memory_order_seq_cst);
    ipckit_shm__store(ipckit_pubsub__slot(p, p->slot, IPCKIT_PUBSUB__S_STATE), 2, memory_order_seq_cst);
    uint32_t t = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__TAIL), w = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__WRITE);
    if ((int32_t)(pos - t) >= 0 && (int32_t)(w - pos) >= 0) return 0;
  }
  return -EPROTO;
}

/**
 * Subscribes to the pub-sub segment `name`: every message published from now on, and the last `history` ones
 * still in the ring (at most the publisher's history). Retries for `wait_ms` while the segment does not exist yet.
 * @returns 0, or a negative errno (sub->error says it in full).
 */
static inline int ipckit_pubsub_subscribe(ipckit_pubsub *p, const char *name, uint32_t history, int wait_ms) {
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name == NULL ? "(null)" : name);
  if (name == NULL || name[0] != '/' || strlen(name) < 2 || strlen(name) > 255) {
    return ipckit_pubsub__fail(p, EINVAL, "subscribe to");
  }
  int64_t deadline = ipckit_shm__now_ms() + wait_ms;
  int rc;
  for (;;) {
    rc = ipckit_pubsub__map(p, name);
    if (rc == 0) break;
    ipckit_pubsub__unmap(p);
    if ((rc != -ENOENT && rc != -EPROTO) || ipckit_shm__now_ms() >= deadline) {
      return ipckit_pubsub__fail(p, -rc, "subscribe to");
    }
    ipckit_shm__sleep_ms(5);
  }
  uint32_t slot = UINT32_MAX;
  for (int pass = 0; pass < 2 && slot == UINT32_MAX; pass++) {
    for (uint32_t i = 0; i < p->nslots; i++) {
      uint32_t free_state = 0;
      if (atomic_compare_exchange_strong(ipckit_shm__word(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_STATE)),
                                         &free_state, 1u)) {
        slot = i;
        break;
      }
    }
    if (slot == UINT32_MAX && pass == 0) ipckit_pubsub__sweep(p);
  }
  if (slot == UINT32_MAX) {
    ipckit_pubsub__unmap(p);
    return ipckit_pubsub__fail(p, EBUSY, "subscribe to");
  }
  p->slot = slot;
  p->gen = atomic_fetch_add(ipckit_shm__word(ipckit_pubsub__slot(p, slot, IPCKIT_PUBSUB__S_GEN)), 1u) + 1u;
  ipckit_shm__store(ipckit_pubsub__slot(p, slot, IPCKIT_PUBSUB__S_TAG), ipckit_shm__self_tag(), memory_order_seq_cst);
  ipckit_shm__store(ipckit_pubsub__slot(p, slot, IPCKIT_PUBSUB__S_ID), (uint32_t)getpid(), memory_order_seq_cst);
  ipckit_shm__store(ipckit_pubsub__slot(p, slot, IPCKIT_PUBSUB__S_SLEEPING), 0, memory_order_seq_cst);
  for (;;) {
    uint32_t n = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__SLOT_LIMIT);
    if (n > slot && n <= p->nslots) break;
    if (atomic_compare_exchange_strong(ipckit_shm__word(ipckit_pubsub__h(p, IPCKIT_PUBSUB__SLOT_LIMIT)), &n,
                                       slot + 1u)) {
      break;
    }
  }
  if (history > p->history) history = p->history;
  rc = ipckit_pubsub__place(p, history);
  if (rc < 0) {
    ipckit_shm__store(ipckit_pubsub__slot(p, slot, IPCKIT_PUBSUB__S_STATE), 0, memory_order_seq_cst);
    ipckit_pubsub__unmap(p);
    return ipckit_pubsub__fail(p, -rc, "subscribe to");
  }
  return 0;
}

/* Overwrite policy: -ESTALE (and R moved to the tail, `missed` set) when the tail passed R; 0 otherwise, also
 * while the publisher is between moving the tail and committing. */
static inline int ipckit_pubsub__lag(ipckit_pubsub *p) {
  uint32_t t = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__TAIL);
  if ((int32_t)(p->r - t) >= 0) return 0;
  for (int i = 0; i < 10000; i++) {
    t = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__TAIL);
    int ok = ipckit_shm__load(ipckit_pubsub__word(p, t, 1), memory_order_seq_cst) == t + 1u;
    uint32_t seq = ipckit_shm__load(ipckit_pubsub__word(p, t, 2), memory_order_relaxed);
    if (!ok || ipckit_pubsub__ld(p, IPCKIT_PUBSUB__TAIL) != t) continue;
    uint32_t missed = seq - p->seq;
    if (missed == 0 || missed > 0x80000000u) return -EPROTO;
    p->missed = missed;
    p->r = t;
    p->seq = seq;
    ipckit_shm__store(ipckit_pubsub__slot(p, p->slot, IPCKIT_PUBSUB__S_SEQ), seq, memory_order_seq_cst);
    ipckit_shm__store(ipckit_pubsub__slot(p, p->slot, IPCKIT_PUBSUB__S_READ), t, memory_order_seq_cst);
    return -ESTALE;
  }
  return 0;
}

/**
 * Receives the next message into buf (at most cap bytes) if there is one now.
 * @returns its length; -EAGAIN when there is none; -EPIPE when the publisher closed and all was received; -ESTALE
 * when lagged (p->missed says how many were lost; receive again); -EMSGSIZE when cap is too small (it stays); -EPROTO.
 */
static inline ssize_t ipckit_pubsub_try_receive(ipckit_pubsub *p, void *buf, size_t cap) {
  if (p->closed || p->base == NULL) return -EBADF;
  int overwrite = p->policy == IPCKIT_PUBSUB_OVERWRITE;
  uint32_t r = p->r;
  if (ipckit_shm__load(ipckit_pubsub__word(p, r, 1), memory_order_acquire) != r + 1u) {
    int rc = overwrite ? ipckit_pubsub__lag(p) : 0;
    if (rc < 0) return rc;
    if (ipckit_pubsub__ld(p, IPCKIT_PUBSUB__FLAGS) & 1u) {
      if (ipckit_shm__load(ipckit_pubsub__word(p, r, 1), memory_order_acquire) != r + 1u) return -EPIPE;
    } else {
      return -EAGAIN;
    }
  }
  uint32_t n = ipckit_shm__load(ipckit_pubsub__word(p, r, 0), memory_order_relaxed);
  uint32_t seq = ipckit_shm__load(ipckit_pubsub__word(p, r, 2), memory_order_relaxed);
  if (n > p->max_message || seq != p->seq) {
    int rc = overwrite ? ipckit_pubsub__lag(p) : 0;
    if (rc < 0) return rc;
    snprintf(p->error, sizeof p->error, "Cannot receive from pub-sub \"%s\": corrupt record at %u", p->name, r);
    return -EPROTO;
  }
  if (n > cap) return -EMSGSIZE;
  uint32_t at = (r + IPCKIT_PUBSUB_RECORD_HEADER) & p->mask;
  uint32_t first = n < p->capacity - at ? n : p->capacity - at;
  memcpy(buf, p->data + at, first);
  if (first < n) memcpy((unsigned char *)buf + first, p->data, n - first);
  if (overwrite) {
    atomic_thread_fence(memory_order_seq_cst);
    int rc = ipckit_pubsub__lag(p);
    if (rc < 0) return rc;
  }
  p->r = r + ipckit_pubsub__record_size(n);
  p->seq = seq + 1u;
  ipckit_shm__store(ipckit_pubsub__slot(p, p->slot, IPCKIT_PUBSUB__S_SEQ), p->seq, memory_order_seq_cst);
  ipckit_shm__store(ipckit_pubsub__slot(p, p->slot, IPCKIT_PUBSUB__S_READ), p->r, memory_order_seq_cst);
  if (ipckit_pubsub__ld(p, IPCKIT_PUBSUB__PUB_SLEEPING) != 0) {
    atomic_fetch_add(ipckit_shm__word(ipckit_pubsub__h(p, IPCKIT_PUBSUB__PROGRESS)), 1u);
    ipckit_shm__futex_wake(ipckit_pubsub__h(p, IPCKIT_PUBSUB__PROGRESS));
  }
  return (ssize_t)n;
}

/**
 * Receives the next message, waiting up to timeout_ms (negative: no limit).
 * @returns as ipckit_pubsub_try_receive, or -ETIMEDOUT, or -EOWNERDEAD when the publisher died (after every
 * message it completed).
 */
static inline ssize_t ipckit_pubsub_receive(ipckit_pubsub *p, void *buf, size_t cap, int timeout_ms) {
  int64_t deadline = timeout_ms < 0 ? INT64_MAX : ipckit_shm__now_ms() + timeout_ms;
  int64_t spin_until = ipckit_shm__now_us() + IPCKIT_SHM_SPIN_US;
  for (;;) {
    ssize_t n = ipckit_pubsub_try_receive(p, buf, cap);
    if (n != -EAGAIN) return n;
    if (ipckit_shm__now_us() < spin_until) {
      ipckit_shm__relax();
      continue;
    }
    int64_t now = ipckit_shm__now_ms();
    if (now >= deadline) return -ETIMEDOUT;
    if (!ipckit_shm_alive(ipckit_pubsub__ld(p, IPCKIT_PUBSUB__PUB_ID), ipckit_pubsub__ld(p, IPCKIT_PUBSUB__PUB_TAG))) {
      n = ipckit_pubsub_try_receive(p, buf, cap);
      return n == -EAGAIN ? -EOWNERDEAD : n;
    }
    unsigned char *sleeping = ipckit_pubsub__slot(p, p->slot, IPCKIT_PUBSUB__S_SLEEPING);
    ipckit_shm__store(sleeping, 1, memory_order_seq_cst);
    atomic_fetch_add(ipckit_shm__word(ipckit_pubsub__h(p, IPCKIT_PUBSUB__SLEEPERS)), 1u);
    uint32_t w = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__WRITE);
    if (ipckit_shm__load(ipckit_pubsub__word(p, p->r, 1), memory_order_seq_cst) != p->r + 1u &&
        (ipckit_pubsub__ld(p, IPCKIT_PUBSUB__FLAGS) & 1u) == 0) {
      int64_t left = deadline - now;
      ipckit_shm__futex_wait(ipckit_pubsub__h(p, IPCKIT_PUBSUB__WRITE), w,
                             left < IPCKIT_SHM_SLEEP_MS ? left : IPCKIT_SHM_SLEEP_MS);
    }
    if (atomic_exchange(ipckit_shm__word(sleeping), 0u) == 1u) {
      atomic_fetch_sub(ipckit_shm__word(ipckit_pubsub__h(p, IPCKIT_PUBSUB__SLEEPERS)), 1u);
    }
  }
}

/* ---- publisher ---- */

/**
 * Creates the pub-sub segment `name` and publishes on it: capacity (a power of two, 64 to 2^30), at most `slots`
 * subscribers, `history` past messages for new subscribers, policy IPCKIT_PUBSUB_BLOCK or _OVERWRITE.
 * @returns 0, or a negative errno.
 */
static inline int ipckit_pubsub_publish_on(ipckit_pubsub *p, const char *name, uint32_t capacity, uint32_t slots,
                                           uint32_t history, uint32_t policy) {
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "%s", name == NULL ? "(null)" : name);
  if (name == NULL || name[0] != '/' || !ipckit_shm__capacity_ok(capacity) || slots < 1 ||
      slots > IPCKIT_PUBSUB_MAX_SLOTS || history > capacity / 16 || policy > 1) {
    return ipckit_pubsub__fail(p, EINVAL, "create");
  }
  uint32_t k;
  size_t data_at;
  ipckit_pubsub__geometry(slots, history, &k, &data_at);
  size_t size = data_at + capacity;
  int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return ipckit_pubsub__fail(p, errno, "create");
  if (ftruncate(fd, (off_t)size) != 0) {
    int e = errno;
    close(fd);
    shm_unlink(name);
    return ipckit_pubsub__fail(p, e, "create");
  }
  void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (m == MAP_FAILED) {
    int e = errno;
    shm_unlink(name);
    return ipckit_pubsub__fail(p, e, "create");
  }
  p->base = (unsigned char *)m;
  p->size = size;
  p->publisher = 1;
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__VERSION, IPCKIT_PUBSUB_VERSION);
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__CAPACITY, capacity);
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__SLOTS, slots);
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__INDEX, k);
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__POLICY, policy);
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__HISTORY, history);
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__PUB_TAG, ipckit_shm__self_tag());
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__PUB_ID, (uint32_t)getpid());
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__MAGIC, IPCKIT_PUBSUB_MAGIC);
  int rc = ipckit_pubsub__map(p, name); /* maps it again, checked as a subscriber would */
  munmap(m, size);
  if (rc < 0) {
    ipckit_pubsub__unmap(p);
    shm_unlink(name);
    return ipckit_pubsub__fail(p, -rc, "create");
  }
  return 0;
}

/* The position after the record at t. */
static inline int ipckit_pubsub__next(ipckit_pubsub *p, uint32_t t, uint32_t *next) {
  uint32_t n = ipckit_shm__load(ipckit_pubsub__word(p, t, 0), memory_order_relaxed);
  if (ipckit_shm__load(ipckit_pubsub__word(p, t, 1), memory_order_relaxed) != t + 1u || n > p->max_message) {
    return -EPROTO;
  }
  *next = t + ipckit_pubsub__record_size(n);
  return *next - t > p->w - t ? -EPROTO : 0;
}

static inline void ipckit_pubsub__set_tail(ipckit_pubsub *p, uint32_t t, uint32_t s) {
  p->t = t;
  p->tseq = s;
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__TAIL, t);
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__TAIL_SEQ, s);
}

/* 0 when a record of `size` bytes fits; -EAGAIN when a live subscriber stops it (block); -EPROTO. */
static inline int ipckit_pubsub__room(ipckit_pubsub *p, uint32_t size) {
  uint32_t w = p->w, t0 = p->t, t = t0, s = p->tseq, next;
  if ((w - t0) + size <= p->capacity) return 0;
  while ((w - t) + size > p->capacity) {
    if (ipckit_pubsub__next(p, t, &next) < 0) return -EPROTO;
    t = next;
    s++;
  }
  if (p->policy == IPCKIT_PUBSUB_OVERWRITE) {
    ipckit_pubsub__set_tail(p, t, s);
    return 0;
  }
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__TAIL, t);
  uint32_t span = t - t0, stop_at = span, limit = ipckit_pubsub__slot_limit(p);
  for (uint32_t i = 0; i < limit; i++) {
    if (ipckit_shm__load(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_STATE), memory_order_seq_cst) != 2) continue;
    uint32_t d = ipckit_shm__load(ipckit_pubsub__slot(p, i, IPCKIT_PUBSUB__S_READ), memory_order_seq_cst) - t0;
    if (d < stop_at) stop_at = d;
  }
  if (stop_at == span) {
    ipckit_pubsub__set_tail(p, t, s);
    return 0;
  }
  t = t0;
  s = p->tseq;
  for (;;) {
    if (ipckit_pubsub__next(p, t, &next) < 0) return -EPROTO;
    if (next - t0 > stop_at) break;
    t = next;
    s++;
  }
  ipckit_pubsub__set_tail(p, t, s);
  return -EAGAIN;
}

/**
 * Publishes n bytes if there is room now. @returns 0; -EAGAIN when a subscriber stops it (block policy);
 * -EMSGSIZE; -EBADF after close; -EPROTO.
 */
static inline int ipckit_pubsub_try_publish(ipckit_pubsub *p, const void *bytes, size_t n) {
  if (!p->publisher || p->closed) return -EBADF;
  if (n > p->max_message) return -EMSGSIZE;
  uint32_t len = (uint32_t)n, size = ipckit_pubsub__record_size(len);
  int rc = ipckit_pubsub__room(p, size);
  if (rc < 0) return rc;
  uint32_t pos = p->w, at = (pos + IPCKIT_PUBSUB_RECORD_HEADER) & p->mask;
  uint32_t first = len < p->capacity - at ? len : p->capacity - at;
  memcpy(p->data + at, bytes, first);
  if (first < len) memcpy(p->data, (const unsigned char *)bytes + first, len - first);
  uint32_t next = pos + size;
  ipckit_shm__store(ipckit_pubsub__word(p, pos, 0), len, memory_order_relaxed);
  ipckit_shm__store(ipckit_pubsub__word(p, pos, 2), p->seq, memory_order_relaxed);
  ipckit_shm__store(ipckit_pubsub__word(p, pos, 3), 0, memory_order_relaxed);
  ipckit_shm__store(p->index + 4u * ((p->seq + 1u) & (p->nindex - 1)), next, memory_order_relaxed);
  if (next != p->t + p->capacity) ipckit_shm__store(ipckit_pubsub__word(p, next, 1), 0, memory_order_relaxed);
  ipckit_shm__store(ipckit_pubsub__word(p, pos, 1), pos + 1u, memory_order_seq_cst);
  p->w = next;
  p->seq++;
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__WRITE, next);
  ipckit_pubsub__st(p, IPCKIT_PUBSUB__SEQ, p->seq);
  if (ipckit_pubsub__ld(p, IPCKIT_PUBSUB__SLEEPERS) != 0) ipckit_shm__futex_wake(ipckit_pubsub__h(p, IPCKIT_PUBSUB__WRITE));
  return 0;
}

/** Publishes n bytes, waiting up to timeout_ms (negative: no limit) for room. @returns 0, -ETIMEDOUT, as try. */
static inline int ipckit_pubsub_publish(ipckit_pubsub *p, const void *bytes, size_t n, int timeout_ms) {
  int64_t deadline = timeout_ms < 0 ? INT64_MAX : ipckit_shm__now_ms() + timeout_ms;
  int64_t checked = 0;
  for (;;) {
    int rc = ipckit_pubsub_try_publish(p, bytes, n);
    if (rc != -EAGAIN) return rc;
    int64_t now = ipckit_shm__now_ms();
    if (now >= deadline) return -ETIMEDOUT;
    if (now - checked >= IPCKIT_SHM_SLEEP_MS) {
      checked = now;
      ipckit_pubsub__sweep(p);
    }
    ipckit_pubsub__st(p, IPCKIT_PUBSUB__PUB_SLEEPING, 1);
    uint32_t progress = ipckit_pubsub__ld(p, IPCKIT_PUBSUB__PROGRESS);
    if (ipckit_pubsub__room(p, ipckit_pubsub__record_size((uint32_t)n)) == -EAGAIN) {
      int64_t left = deadline - now;
      ipckit_shm__futex_wait(ipckit_pubsub__h(p, IPCKIT_PUBSUB__PROGRESS), progress,
                             left < IPCKIT_SHM_SLEEP_MS ? left : IPCKIT_SHM_SLEEP_MS);
    }
    ipckit_pubsub__st(p, IPCKIT_PUBSUB__PUB_SLEEPING, 0);
  }
}

/** Live subscribers now (dead ones are dropped on the way). */
static inline uint32_t ipckit_pubsub_subscribers(ipckit_pubsub *p) {
  return p->base == NULL ? 0 : ipckit_pubsub__sweep(p);
}

/**
 * Closes: a publisher marks the end (subscribers receive everything, then -EPIPE) and removes the name; a
 * subscriber frees its slot. Idempotent.
 */
static inline void ipckit_pubsub_close(ipckit_pubsub *p) {
  if (p->closed || p->base == NULL) return;
  p->closed = 1;
  if (p->publisher) {
    atomic_fetch_or(ipckit_shm__word(ipckit_pubsub__h(p, IPCKIT_PUBSUB__FLAGS)), 1u);
    ipckit_shm__futex_wake(ipckit_pubsub__h(p, IPCKIT_PUBSUB__WRITE));
    shm_unlink(p->name);
  } else {
    ipckit_pubsub__drop(p, p->slot, p->gen);
    atomic_fetch_add(ipckit_shm__word(ipckit_pubsub__h(p, IPCKIT_PUBSUB__PROGRESS)), 1u);
    ipckit_shm__futex_wake(ipckit_pubsub__h(p, IPCKIT_PUBSUB__PROGRESS));
  }
  ipckit_pubsub__unmap(p);
}

#endif
