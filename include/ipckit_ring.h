/*
 * ipckit_ring.h: a C peer of ipckit's shared-memory channel (`shm.create` / `shm.open`), in one header.
 *
 * A C process that includes this header is a full peer of an ipckit channel between processes: it opens a channel
 * an ipckit process created (and takes the opener's side), or creates one that an ipckit process opens; it sends
 * and receives whole messages through the two rings of the segment, and closes its end as ipckit does. Deno, Bun
 * and Node processes on the other side need nothing special. Linux only (futex(2)); x86-64 and arm64.
 *
 * The layout is ipckit's, layout version 2, byte for byte as documented in `shm/ring_channel_layout.ts` (the
 * segment: a 192-byte header, ring 0 creator -> opener, ring 1 opener -> creator) and `shm/ring.ts` (each ring: a
 * 192-byte header with the positions W and R and the sleeping flags, then the records: a length, a commit word,
 * the bytes). A segment of another version is refused with -EPROTONOSUPPORT before anything is read from it.
 *
 * Everything in the segment is treated as hostile (the peer may write anything there): every length and position
 * is checked before it is used, and no read or write ever leaves the mapping; a ring that breaks these rules
 * ends the channel with -EPROTO.
 *
 * Waking: this peer attaches without ipckit's doorbell socket (`attached` = 2), so both sides wake each other with
 * futexes on the W and R words, and only when the other side announced that it sleeps. Blocking calls sleep at
 * most 100 ms at a time and look at the peer's liveness (pid and start-time tag, as ipckit's `os/liveness.ts`)
 * in between.
 *
 * Use: include it first (it asks glibc for _DEFAULT_SOURCE), or compile with -D_GNU_SOURCE or -std=gnu11.
 *
 *   cc -std=c11 -O2 -Ipath/to/ipckit/include peer.c -o peer      (glibc < 2.34: add -lrt)
 *
 *   #include "ipckit_ring.h"
 *   ipckit_shm_channel ch;
 *   int rc = ipckit_shm_open(&ch, "/calc", 5000);            // the name an ipckit process gave shm.create
 *   if (rc < 0) { fprintf(stderr, "%s\n", ipckit_shm_error(&ch)); return 1; }
 *   char buf[4096];
 *   ssize_t n = ipckit_shm_receive(&ch, buf, sizeof buf, -1); // waits; -EPIPE once the peer closed
 *   if (n >= 0) ipckit_shm_send(&ch, buf, (size_t)n, -1);    // echo it back
 *   ipckit_shm_close(&ch);
 *
 * Errors are negative errno values (as the kernel returns them); ipckit_shm_strerror(code) names one, and
 * ipckit_shm_error(&ch) is the whole message of the last failure on a channel ("Cannot open shm channel "/calc":
 * layout version 3, this peer speaks 2").
 *
 * Threads: one thread per end, or one sending thread and one receiving thread (the two directions share nothing
 * but the error text). Not supported: ipckit's doorbell socket (wake-ups are futexes). Publish-subscribe is
 * include/ipckit_pubsub.h, built on this header.
 */
#ifndef IPCKIT_RING_H
#define IPCKIT_RING_H

/* syscall(), shm_open(), ftruncate() and clock_gettime() are outside strict C11: ask glibc for them. */
#if !defined(_DEFAULT_SOURCE) && !defined(_GNU_SOURCE)
#define _DEFAULT_SOURCE 1
#endif
#if defined(__GLIBC__) && !defined(__USE_MISC)
#error "ipckit_ring.h needs _DEFAULT_SOURCE: include it before any system header, or compile with -D_GNU_SOURCE"
#endif

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifndef __linux__
#error "ipckit_ring.h needs Linux (futex(2))"
#endif

/* futex(2) operations (as <linux/futex.h>, which needs the kernel headers installed). */
#define IPCKIT_SHM__FUTEX_WAIT 0
#define IPCKIT_SHM__FUTEX_WAKE 1

/* The layout version this header speaks (the channel's and each ring's version word). */
#define IPCKIT_SHM_VERSION 2u
/* Magic words: "IPCC" (the channel header) and "IPCR" (each ring's header). */
#define IPCKIT_SHM_CHANNEL_MAGIC 0x43435049u
#define IPCKIT_SHM_RING_MAGIC 0x52435049u
/* Header sizes: the channel's, and each ring's (its data area follows it). */
#define IPCKIT_SHM_CHANNEL_HEADER 192u
#define IPCKIT_SHM_RING_HEADER 192u
/* Ring capacities: a power of two from 64 bytes to 1 GiB. */
#define IPCKIT_SHM_MIN_CAPACITY 64u
#define IPCKIT_SHM_MAX_CAPACITY (1u << 30)
/* Ring flags: the producer closed (the consumer sees the end once drained), the consumer closed (sends fail). */
#define IPCKIT_SHM_PRODUCER_CLOSED 1u
#define IPCKIT_SHM_CONSUMER_CLOSED 2u
/* `attached` once the opener claimed its side: with ipckit's doorbell socket, or without (futex wake-ups). */
#define IPCKIT_SHM_WITH_BELL 1u
#define IPCKIT_SHM_WITHOUT_BELL 2u
/* Longest single sleep in a blocking call: the peer's liveness and the flags are looked at in between. */
#define IPCKIT_SHM_SLEEP_MS 100
/* How long a blocking call spins before it sleeps (the peer often answers within microseconds). */
#define IPCKIT_SHM_SPIN_US 50

/* Byte offsets in the channel header and in a ring header. */
enum {
  IPCKIT_SHM__C_MAGIC = 0,
  IPCKIT_SHM__C_VERSION = 4,
  IPCKIT_SHM__C_CAPACITY = 8,
  IPCKIT_SHM__C_ATTACHED = 12,
  IPCKIT_SHM__C_BELL_LENGTH = 16,
  IPCKIT_SHM__R_MAGIC = 0,
  IPCKIT_SHM__R_VERSION = 4,
  IPCKIT_SHM__R_CAPACITY = 8,
  IPCKIT_SHM__R_FLAGS = 12,
  IPCKIT_SHM__R_PRODUCER = 16,
  IPCKIT_SHM__R_CONSUMER = 20,
  IPCKIT_SHM__R_PRODUCER_TAG = 24,
  IPCKIT_SHM__R_CONSUMER_TAG = 28,
  IPCKIT_SHM__R_WRITE = 64,
  IPCKIT_SHM__R_CONSUMER_SLEEPING = 68,
  IPCKIT_SHM__R_READ = 128,
  IPCKIT_SHM__R_PRODUCER_SLEEPING = 132
};

/* One ring as this end sees it. `pos` is this end's own position (W of the ring it writes, R of the ring it reads:
 * only this end writes it, so it is kept here and never read back); `seen` the producer's last look at R. */
typedef struct ipckit_shm_ring {
  unsigned char *header;
  unsigned char *data;
  uint32_t pos;
  uint32_t seen;
} ipckit_shm_ring;

/* One end of a channel. Fill it with ipckit_shm_open() or ipckit_shm_create(); its fields are private. */
typedef struct ipckit_shm_channel {
  int fd;
  unsigned char *base;
  size_t size;
  uint32_t capacity;
  /* The largest message: capacity - 8 bytes. */
  uint32_t max_message;
  /* 0: the creator (writes ring 0), 1: the opener (writes ring 1). */
  int side;
  int closed;
  /* The incoming ring broke (a corrupt record or position): receives fail with this code from then on. */
  int broken;
  /* The peer process, for liveness: pid and start-time tag (0: unknown). */
  uint32_t peer_pid;
  uint32_t peer_tag;
  /* The length of the message a receive left in the ring because the buffer was too small (after -EMSGSIZE). */
  size_t need;
  ipckit_shm_ring out;
  ipckit_shm_ring in;
  char name[256];
  char error[320];
} ipckit_shm_channel;

/* ---- shared words: every access is atomic (the peer writes them concurrently) ---- */

static inline _Atomic uint32_t *ipckit_shm__word(unsigned char *p) {
  return (_Atomic uint32_t *)(void *)p;
}

static inline uint32_t ipckit_shm__load(unsigned char *p, memory_order order) {
  return atomic_load_explicit(ipckit_shm__word(p), order);
}

static inline void ipckit_shm__store(unsigned char *p, uint32_t v, memory_order order) {
  atomic_store_explicit(ipckit_shm__word(p), v, order);
}

static inline long ipckit_shm__futex_wait(unsigned char *p, uint32_t value, int64_t ms) {
  struct timespec ts;
  if (ms < 0) ms = 0;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  /* Not FUTEX_PRIVATE_FLAG: the waker is another process. */
  return syscall(SYS_futex, (uint32_t *)(void *)p, IPCKIT_SHM__FUTEX_WAIT, value, &ts, NULL, 0);
}

static inline void ipckit_shm__futex_wake(unsigned char *p) {
  syscall(SYS_futex, (uint32_t *)(void *)p, IPCKIT_SHM__FUTEX_WAKE, 0x7fffffff, NULL, NULL, 0);
}

static inline int64_t ipckit_shm__now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t ipckit_shm__now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline void ipckit_shm__sleep_ms(int ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static inline void ipckit_shm__relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __asm__ __volatile__("pause");
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* ---- errors ---- */

/**
 * The name of an error code (negative or positive errno) as this header uses it.
 * @returns a static string, never NULL.
 */
static inline const char *ipckit_shm_strerror(int code) {
  switch (code < 0 ? -code : code) {
  case 0: return "success";
  case EAGAIN: return "EAGAIN: nothing to receive, or no room, right now";
  case ETIMEDOUT: return "ETIMEDOUT: the wait timed out";
  case EPIPE: return "EPIPE: the peer closed the channel";
  case EBADF: return "EBADF: this end is closed";
  case EMSGSIZE: return "EMSGSIZE: the message is too large";
  case EPROTO: return "EPROTO: the segment holds no ipckit channel, or a corrupt one";
  case EPROTONOSUPPORT: return "EPROTONOSUPPORT: the segment holds another layout version";
  case EOWNERDEAD: return "EOWNERDEAD: the peer process died";
  case EBUSY: return "EBUSY: the channel already has its peer";
  case ENOENT: return "ENOENT: no such segment";
  case EEXIST: return "EEXIST: the segment already exists";
  case EINVAL: return "EINVAL: bad argument";
  default: return "an error of the system (see errno)";
  }
}

/**
 * The message of the last failure on `ch` (std style: "Cannot open shm channel "/x": it does not exist"); "" when
 * none. Valid after a failed ipckit_shm_open() or ipckit_shm_create() too.
 */
static inline const char *ipckit_shm_error(const ipckit_shm_channel *ch) {
  return ch->error;
}

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static inline int ipckit_shm__fail(ipckit_shm_channel *ch, int code, const char *format, ...);

static inline int ipckit_shm__fail(ipckit_shm_channel *ch, int code, const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(ch->error, sizeof ch->error, format, args);
  va_end(args);
  return -code;
}

/* ---- liveness, as ipckit's os/liveness.ts ---- */

/* Reads /proc/<pid>/stat: 1 with its state letter and start time, 0 when there is no such process, -1 when it
 * cannot tell (no /proc, not readable). */
static inline int ipckit_shm__stat(uint32_t pid, char *state, unsigned long long *start) {
  char path[64];
  char text[1024];
  snprintf(path, sizeof path, "/proc/%u/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT && errno != ESRCH) return -1;
    return access("/proc/self/stat", F_OK) == 0 ? 0 : -1;
  }
  ssize_t n = read(fd, text, sizeof text - 1);
  int err = errno;
  close(fd);
  if (n <= 0) return n < 0 && err == ESRCH ? 0 : -1;
  text[n] = '\0';
  /* The command name (field 2) may hold spaces and parentheses: the fields after it start after the last ')'. */
  char *p = strrchr(text, ')');
  if (p == NULL || p[1] != ' ') return -1;
  p += 2;
  *state = *p;
  for (int field = 3; field < 22; field++) {
    p = strchr(p, ' ');
    if (p == NULL) return -1;
    p++;
  }
  char *end;
  *start = strtoull(p, &end, 10);
  return end == p ? -1 : 1;
}

/* The 32-bit tag of a start time (never 0: 0 means unknown). */
static inline uint32_t ipckit_shm__tag(unsigned long long start) {
  uint32_t tag = (uint32_t)(start & 0xffffffffu);
  return tag == 0 ? 1 : tag;
}

/* This process's start-time tag (0 when /proc cannot tell). */
static inline uint32_t ipckit_shm__self_tag(void) {
  char state;
  unsigned long long start;
  return ipckit_shm__stat((uint32_t)getpid(), &state, &start) == 1 ? ipckit_shm__tag(start) : 0;
}

/**
 * Whether process `pid` is still the one tagged `tag` (0: any process with that pid) and not a zombie: the check of
 * ipckit's os/liveness.ts.
 */
static inline int ipckit_shm_alive(uint32_t pid, uint32_t tag) {
  char state;
  unsigned long long start;
  if (pid == 0 || pid > 0x7fffffffu) return 0;
  int found = ipckit_shm__stat(pid, &state, &start);
  if (found == 0) return 0;
  if (found < 0) return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
  if (state == 'Z' || state == 'X') return 0;
  return tag == 0 || ipckit_shm__tag(start) == tag;
}

/* ---- layout ---- */

/** Bytes of a channel's segment for a ring capacity. */
static inline size_t ipckit_shm_channel_size(uint32_t capacity) {
  return IPCKIT_SHM_CHANNEL_HEADER + 2 * ((size_t)IPCKIT_SHM_RING_HEADER + capacity);
}

static inline int ipckit_shm__capacity_ok(uint32_t c) {
  return c >= IPCKIT_SHM_MIN_CAPACITY && c <= IPCKIT_SHM_MAX_CAPACITY && (c & (c - 1)) == 0;
}

static inline int ipckit_shm__check_name(ipckit_shm_channel *ch, const char *name, const char *what) {
  size_t n = name == NULL ? 0 : strlen(name);
  ch->name[0] = '\0';
  if (n < 2 || n > 255 || name[0] != '/' || strchr(name + 1, '/') != NULL) {
    return ipckit_shm__fail(ch, EINVAL,
                            "Cannot %s shm channel \"%s\": the name must be \"/\" then 1 to 254 bytes without \"/\"",
                            what, name == NULL ? "(null)" : name);
  }
  memcpy(ch->name, name, n + 1);
  return 0;
}

static inline void ipckit_shm__reset(ipckit_shm_channel *ch) {
  memset(ch, 0, sizeof *ch);
  ch->fd = -1;
}

static inline void ipckit_shm__release(ipckit_shm_channel *ch) {
  if (ch->base != NULL) munmap(ch->base, ch->size);
  if (ch->fd >= 0) close(ch->fd);
  ch->base = NULL;
  ch->fd = -1;
}

/* Sets this end's rings (side 0 writes ring 0) and reads its own positions once. */
static inline void ipckit_shm__rings(ipckit_shm_channel *ch) {
  unsigned char *r0 = ch->base + IPCKIT_SHM_CHANNEL_HEADER;
  unsigned char *r1 = r0 + IPCKIT_SHM_RING_HEADER + ch->capacity;
  unsigned char *out = ch->side == 0 ? r0 : r1;
  unsigned char *in = ch->side == 0 ? r1 : r0;
  ch->out.header = out;
  ch->out.data = out + IPCKIT_SHM_RING_HEADER;
  ch->out.pos = ipckit_shm__load(out + IPCKIT_SHM__R_WRITE, memory_order_acquire);
  ch->out.seen = 0;
  ch->in.header = in;
  ch->in.data = in + IPCKIT_SHM_RING_HEADER;
  ch->in.pos = ipckit_shm__load(in + IPCKIT_SHM__R_READ, memory_order_acquire);
  ch->in.seen = 0;
  ch->max_message = ch->capacity - 8;
}

/* Records this process as one side of a ring: the tag first, so a reader of the pid sees both. */
static inline void ipckit_shm__set_owner(unsigned char *ring, int producer, uint32_t pid, uint32_t tag) {
  ipckit_shm__store(ring + (producer ? IPCKIT_SHM__R_PRODUCER_TAG : IPCKIT_SHM__R_CONSUMER_TAG), tag,
                    memory_order_seq_cst);
  ipckit_shm__store(ring + (producer ? IPCKIT_SHM__R_PRODUCER : IPCKIT_SHM__R_CONSUMER), pid, memory_order_seq_cst);
}

/* Checks one ring header against the channel's capacity. */
static inline int ipckit_shm__check_ring(ipckit_shm_channel *ch, unsigned char *ring, int index) {
  uint32_t magic = ipckit_shm__load(ring + IPCKIT_SHM__R_MAGIC, memory_order_acquire);
  uint32_t version = ipckit_shm__load(ring + IPCKIT_SHM__R_VERSION, memory_order_relaxed);
  uint32_t capacity = ipckit_shm__load(ring + IPCKIT_SHM__R_CAPACITY, memory_order_relaxed);
  if (magic != IPCKIT_SHM_RING_MAGIC) {
    return ipckit_shm__fail(ch, EPROTO, "Cannot open shm channel \"%s\": no ring %d in the segment", ch->name, index);
  }
  if (version != IPCKIT_SHM_VERSION) {
    return ipckit_shm__fail(ch, EPROTONOSUPPORT,
                            "Cannot open shm channel \"%s\": ring %d has layout version %u, this peer speaks %u",
                            ch->name, index, version, IPCKIT_SHM_VERSION);
  }
  if (capacity != ch->capacity) {
    return ipckit_shm__fail(ch, EPROTO,
                            "Cannot open shm channel \"%s\": ring %d has capacity %u, the channel says %u", ch->name,
                            index, capacity, ch->capacity);
  }
  return 0;
}

/* One attempt to map the channel `ch->name` (open): 0, or -EAGAIN while its creator is not done yet. */
static inline int ipckit_shm__try_map(ipckit_shm_channel *ch, int *why) {
  ch->fd = shm_open(ch->name, O_RDWR | O_CLOEXEC, 0);
  if (ch->fd < 0) {
    int e = errno;
    if (e == ENOENT) {
      *why = ipckit_shm__fail(ch, ENOENT, "Cannot open shm channel \"%s\": it does not exist", ch->name);
      return -EAGAIN;
    }
    return ipckit_shm__fail(ch, e, "Cannot open shm channel \"%s\": shm_open failed: %s", ch->name, strerror(e));
  }
  struct stat st;
  if (fstat(ch->fd, &st) != 0) {
    int e = errno;
    return ipckit_shm__fail(ch, e, "Cannot open shm channel \"%s\": fstat failed: %s", ch->name, strerror(e));
  }
  if ((unsigned long long)st.st_size < IPCKIT_SHM_CHANNEL_HEADER) {
    /* Its creator has not sized it yet. */
    *why = ipckit_shm__fail(ch, EPROTO, "Cannot open shm channel \"%s\": the segment holds no ipckit channel",
                            ch->name);
    return -EAGAIN;
  }
  /* The header first: the capacity says how much to map, and it is checked before it is trusted. */
  unsigned char *head = (unsigned char *)mmap(NULL, IPCKIT_SHM_CHANNEL_HEADER, PROT_READ, MAP_SHARED, ch->fd, 0);
  if (head == MAP_FAILED) {
    int e = errno;
    return ipckit_shm__fail(ch, e, "Cannot open shm channel \"%s\": mmap failed: %s", ch->name, strerror(e));
  }
  uint32_t magic = ipckit_shm__load(head + IPCKIT_SHM__C_MAGIC, memory_order_acquire);
  uint32_t version = ipckit_shm__load(head + IPCKIT_SHM__C_VERSION, memory_order_relaxed);
  uint32_t capacity = ipckit_shm__load(head + IPCKIT_SHM__C_CAPACITY, memory_order_relaxed);
  munmap(head, IPCKIT_SHM_CHANNEL_HEADER);
  if (magic != IPCKIT_SHM_CHANNEL_MAGIC) {
    /* The creator writes the magic word last: a segment without it may still be being laid out. */
    *why = ipckit_shm__fail(ch, EPROTO, "Cannot open shm channel \"%s\": the segment holds no ipckit channel",
                            ch->name);
    return -EAGAIN;
  }
  if (version != IPCKIT_SHM_VERSION) {
    return ipckit_shm__fail(ch, EPROTONOSUPPORT,
                            "Cannot open shm channel \"%s\": layout version %u, this peer speaks %u", ch->name,
                            version, IPCKIT_SHM_VERSION);
  }
  if (!ipckit_shm__capacity_ok(capacity)) {
    return ipckit_shm__fail(ch, EPROTO, "Cannot open shm channel \"%s\": bad ring capacity %u", ch->name, capacity);
  }
  size_t size = ipckit_shm_channel_size(capacity);
  if ((unsigned long long)st.st_size < size) {
    return ipckit_shm__fail(ch, EPROTO,
                            "Cannot open shm channel \"%s\": the segment (%llu bytes) is smaller than its layout (%zu)",
                            ch->name, (unsigned long long)st.st_size, size);
  }
  void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, ch->fd, 0);
  if (base == MAP_FAILED) {
    int e = errno;
    return ipckit_shm__fail(ch, e, "Cannot open shm channel \"%s\": mmap failed: %s", ch->name, strerror(e));
  }
  ch->base = (unsigned char *)base;
  ch->size = size;
  ch->capacity = capacity;
  unsigned char *r0 = ch->base + IPCKIT_SHM_CHANNEL_HEADER;
  unsigned char *r1 = r0 + IPCKIT_SHM_RING_HEADER + capacity;
  int rc = ipckit_shm__check_ring(ch, r0, 0);
  if (rc == 0) rc = ipckit_shm__check_ring(ch, r1, 1);
  if (rc < 0) return rc;
  if (ipckit_shm__load(r0 + IPCKIT_SHM__R_PRODUCER, memory_order_acquire) == 0) {
    /* Its creator records itself before the magic word; an older one after it: wait until it did. */
    *why = ipckit_shm__fail(ch, EPROTO, "Cannot open shm channel \"%s\": its creator has not recorded itself",
                            ch->name);
    return -EAGAIN;
  }
  return 0;
}

/**
 * Opens the channel an ipckit process created with `shm.create(name)` and attaches as its opener (without the
 * doorbell: both sides then wake each other with futexes). Retries for `wait_ms` milliseconds (0: once; negative:
 * forever) while the segment does not exist or its creator has not laid it out yet.
 *
 * @returns 0, or -ENOENT (no such segment after `wait_ms`), -EPROTONOSUPPORT (another layout version), -EPROTO (no
 * ipckit channel, or a corrupt header), -EBUSY (it already has its peer), -EINVAL (a bad name), another -errno of
 * shm_open/mmap. ipckit_shm_error(ch) says what failed.
 */
static inline int ipckit_shm_open(ipckit_shm_channel *ch, const char *name, int wait_ms) {
  ipckit_shm__reset(ch);
  int rc = ipckit_shm__check_name(ch, name, "open");
  if (rc < 0) return rc;
  int64_t deadline = ipckit_shm__now_ms() + (wait_ms < 0 ? 0 : wait_ms);
  int backoff = 1;
  int why = -EPROTO;
  for (;;) {
    rc = ipckit_shm__try_map(ch, &why);
    if (rc != -EAGAIN) break;
    ipckit_shm__release(ch);
    int64_t left = deadline - ipckit_shm__now_ms();
    if (wait_ms >= 0 && left <= 0) {
      /* The last reason stands: it does not exist, holds no channel, or its creator has not recorded itself. */
      return why;
    }
    ipckit_shm__sleep_ms(wait_ms >= 0 && left < backoff ? (int)left : backoff);
    if (backoff < 20) backoff *= 2;
  }
  if (rc < 0) {
    ipckit_shm__release(ch);
    return rc;
  }
  ch->side = 1;
  ipckit_shm__rings(ch);
  /* Who the creator is (for its liveness), then who this is, then the claim: the creator reads our owner once it
   * sees `attached`. */
  ch->peer_pid = ipckit_shm__load(ch->in.header + IPCKIT_SHM__R_PRODUCER, memory_order_acquire);
  ch->peer_tag = ipckit_shm__load(ch->in.header + IPCKIT_SHM__R_PRODUCER_TAG, memory_order_acquire);
  uint32_t me = (uint32_t)getpid();
  uint32_t tag = ipckit_shm__self_tag();
  ipckit_shm__set_owner(ch->out.header, 1, me, tag);
  ipckit_shm__set_owner(ch->in.header, 0, me, tag);
  uint32_t expected = 0;
  if (!atomic_compare_exchange_strong(ipckit_shm__word(ch->base + IPCKIT_SHM__C_ATTACHED), &expected,
                                      IPCKIT_SHM_WITHOUT_BELL)) {
    ipckit_shm__release(ch);
    return ipckit_shm__fail(ch, EBUSY, "Cannot open shm channel \"%s\": it already has its peer", ch->name);
  }
  ipckit_shm__futex_wake(ch->base + IPCKIT_SHM__C_ATTACHED);
  ch->error[0] = '\0';
  return 0;
}

/**
 * Creates the segment `name` (mode `mode`, e.g. 0600) holding a channel with rings of `capacity` data bytes
 * (rounded up to a power of two, at least 64), and waits up to `timeout_ms` (negative: forever) for a peer to open
 * it (an ipckit process with `shm.open(name)`, or ipckit_shm_open()). Once the peer attached, the name is removed,
 * as ipckit's `shm.create` does: nothing is left in /dev/shm if either process dies later.
 *
 * @returns 0, or -EEXIST (the name exists), -ETIMEDOUT (no peer came: the segment is removed), -EINVAL (a bad name
 * or capacity), another -errno of shm_open/ftruncate/mmap.
 */
static inline int ipckit_shm_create(ipckit_shm_channel *ch, const char *name, uint32_t capacity, mode_t mode,
                                    int timeout_ms) {
  ipckit_shm__reset(ch);
  int rc = ipckit_shm__check_name(ch, name, "create");
  if (rc < 0) return rc;
  if (capacity == 0 || capacity > IPCKIT_SHM_MAX_CAPACITY) {
    return ipckit_shm__fail(ch, EINVAL, "Cannot create shm channel \"%s\": capacity %u is not from 1 to 2^30",
                            ch->name, capacity);
  }
  uint32_t c = IPCKIT_SHM_MIN_CAPACITY;
  while (c < capacity) c *= 2;
  size_t size = ipckit_shm_channel_size(c);
  ch->fd = shm_open(ch->name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (ch->fd < 0) {
    int e = errno;
    ch->fd = -1;
    if (e == EEXIST) return ipckit_shm__fail(ch, EEXIST, "Cannot create shm channel \"%s\": it exists", ch->name);
    return ipckit_shm__fail(ch, e, "Cannot create shm channel \"%s\": shm_open failed: %s", ch->name, strerror(e));
  }
  void *base = MAP_FAILED;
  if (ftruncate(ch->fd, (off_t)size) != 0 ||
      (base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, ch->fd, 0)) == MAP_FAILED) {
    int e = errno;
    shm_unlink(ch->name);
    ipckit_shm__release(ch);
    return ipckit_shm__fail(ch, e, "Cannot create shm channel \"%s\": %s", ch->name, strerror(e));
  }
  ch->base = (unsigned char *)base;
  ch->size = size;
  ch->capacity = c;
  ch->side = 0;
  /* A fresh segment is zero-filled. Each ring's magic last; then the creator's owner; the channel's magic last of
   * all: an opener that sees it sees the rest (and whose liveness to watch). No doorbell path (length 0). */
  unsigned char *r0 = ch->base + IPCKIT_SHM_CHANNEL_HEADER;
  unsigned char *r1 = r0 + IPCKIT_SHM_RING_HEADER + c;
  unsigned char *rings[2] = {r0, r1};
  for (int i = 0; i < 2; i++) {
    ipckit_shm__store(rings[i] + IPCKIT_SHM__R_VERSION, IPCKIT_SHM_VERSION, memory_order_relaxed);
    ipckit_shm__store(rings[i] + IPCKIT_SHM__R_CAPACITY, c, memory_order_relaxed);
    ipckit_shm__store(rings[i] + IPCKIT_SHM__R_MAGIC, IPCKIT_SHM_RING_MAGIC, memory_order_seq_cst);
  }
  uint32_t me = (uint32_t)getpid();
  uint32_t tag = ipckit_shm__self_tag();
  ipckit_shm__set_owner(r0, 1, me, tag);
  ipckit_shm__set_owner(r1, 0, me, tag);
  ipckit_shm__store(ch->base + IPCKIT_SHM__C_VERSION, IPCKIT_SHM_VERSION, memory_order_relaxed);
  ipckit_shm__store(ch->base + IPCKIT_SHM__C_CAPACITY, c, memory_order_relaxed);
  ipckit_shm__store(ch->base + IPCKIT_SHM__C_MAGIC, IPCKIT_SHM_CHANNEL_MAGIC, memory_order_seq_cst);
  ipckit_shm__rings(ch);
  int64_t deadline = ipckit_shm__now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
  unsigned char *attached = ch->base + IPCKIT_SHM__C_ATTACHED;
  while (ipckit_shm__load(attached, memory_order_acquire) == 0) {
    int64_t left = timeout_ms < 0 ? IPCKIT_SHM_SLEEP_MS : deadline - ipckit_shm__now_ms();
    if (left <= 0) {
      shm_unlink(ch->name);
      ipckit_shm__release(ch);
      return ipckit_shm__fail(ch, ETIMEDOUT, "Cannot create shm channel \"%s\": no peer opened it within %d ms",
                              ch->name, timeout_ms);
    }
    ipckit_shm__futex_wait(attached, 0, left < IPCKIT_SHM_SLEEP_MS ? left : IPCKIT_SHM_SLEEP_MS);
  }
  /* The opener recorded itself before it claimed `attached`. Whether it also connected a doorbell does not matter:
   * this header never laid one out, so an ipckit opener attaches without (2) and wakes with futexes. */
  ch->peer_pid = ipckit_shm__load(ch->out.header + IPCKIT_SHM__R_CONSUMER, memory_order_acquire);
  ch->peer_tag = ipckit_shm__load(ch->out.header + IPCKIT_SHM__R_CONSUMER_TAG, memory_order_acquire);
  shm_unlink(ch->name);
  ch->error[0] = '\0';
  return 0;
}

/** The largest message this channel carries: its ring capacity - 8 bytes. */
static inline size_t ipckit_shm_max_message(const ipckit_shm_channel *ch) {
  return ch->max_message;
}

/**
 * Whether the peer announced that it sleeps waiting for a message from this end (its receive will be woken by the
 * next send). For diagnostics and tests.
 */
static inline int ipckit_shm_peer_waiting(const ipckit_shm_channel *ch) {
  return ch->base != NULL &&
         ipckit_shm__load(ch->out.header + IPCKIT_SHM__R_CONSUMER_SLEEPING, memory_order_seq_cst) != 0;
}

/* Takes the announcement at `flag` (1 -> 0) and wakes the sleeper on `word`: only the one that takes it wakes. */
static inline void ipckit_shm__wake_if_sleeping(unsigned char *flag, unsigned char *word) {
  uint32_t one = 1;
  if (ipckit_shm__load(flag, memory_order_seq_cst) != 0 &&
      atomic_compare_exchange_strong(ipckit_shm__word(flag), &one, 0)) {
    ipckit_shm__futex_wake(word);
  }
}

/* ---- sending ---- */

/* Marks the incoming ring as unusable (a corrupt record or position) and tells the peer, as ipckit does. */
static inline int ipckit_shm__break(ipckit_shm_channel *ch, int code) {
  ch->broken = code;
  atomic_fetch_or(ipckit_shm__word(ch->in.header + IPCKIT_SHM__R_FLAGS), IPCKIT_SHM_CONSUMER_CLOSED);
  ipckit_shm__futex_wake(ch->in.header + IPCKIT_SHM__R_READ);
  return -code;
}

/**
 * Sends one message if there is room now.
 *
 * @returns 0 (sent), -EAGAIN (the ring is full: nothing written), -EPIPE (the peer closed), -EBADF (this end is
 * closed), -EMSGSIZE (`length` exceeds ipckit_shm_max_message()), -EPROTO (the peer wrote impossible positions).
 */
static inline int ipckit_shm_try_send(ipckit_shm_channel *ch, const void *message, size_t length) {
  if (ch->closed || ch->base == NULL) {
    return ipckit_shm__fail(ch, EBADF, "Cannot send on shm channel \"%s\": it is closed", ch->name);
  }
  unsigned char *h = ch->out.header;
  if (ipckit_shm__load(h + IPCKIT_SHM__R_FLAGS, memory_order_acquire) & IPCKIT_SHM_CONSUMER_CLOSED) {
    return ipckit_shm__fail(ch, EPIPE, "Cannot send on shm channel \"%s\": the peer closed it", ch->name);
  }
  if (length > ch->max_message) {
    return ipckit_shm__fail(ch, EMSGSIZE,
                            "Cannot send a message of %zu bytes on shm channel \"%s\": it exceeds the ring's limit "
                            "(%u bytes)",
                            length, ch->name, ch->max_message);
  }
  const uint32_t cap = ch->capacity;
  const uint32_t n = (uint32_t)length;
  const uint32_t size = (8 + n + 7) & ~7u;
  const uint32_t w = ch->out.pos;
  uint32_t used = w - ch->out.seen;
  if (used > cap || cap - used < size || (w & 7) != 0) {
    /* Room seems short: read R again (the consumer's), and trust nothing about it. */
    uint32_t r = ipckit_shm__load(h + IPCKIT_SHM__R_READ, memory_order_seq_cst);
    used = w - r;
    if (used > cap || ((w | r) & 7) != 0) {
      return ipckit_shm__fail(ch, EPROTO,
                              "Cannot write to shm channel \"%s\": its positions are corrupt (write %u, read %u, "
                              "capacity %u)",
                              ch->name, w, r, cap);
    }
    ch->out.seen = r;
  }
  const uint32_t free_bytes = cap - used;
  if (free_bytes < size) return -EAGAIN;
  unsigned char *data = ch->out.data;
  const uint32_t at = w & (cap - 1);
  ipckit_shm__store(data + at, n, memory_order_relaxed);
  const uint32_t start = at + 8 == cap ? 0 : at + 8;
  const uint32_t first = n < cap - start ? n : cap - start;
  memcpy(data + start, message, first);
  if (first < n) memcpy(data, (const unsigned char *)message + first, n - first);
  /* Stale bytes never pass for a commit: zero the next record's commit word while it is free space. */
  if (size < free_bytes) ipckit_shm__store(data + ((at + size) & (cap - 1)) + 4, 0, memory_order_relaxed);
  /* The commit word last (after every byte of the record), then W. */
  ipckit_shm__store(data + at + 4, w + 1, memory_order_seq_cst);
  ch->out.pos = w + size;
  ipckit_shm__store(h + IPCKIT_SHM__R_WRITE, w + size, memory_order_release);
  ipckit_shm__wake_if_sleeping(h + IPCKIT_SHM__R_CONSUMER_SLEEPING, h + IPCKIT_SHM__R_WRITE);
  return 0;
}

/* Whether the peer died (looked at every 100 ms at most, on the slow path of a blocking call). */
static inline int ipckit_shm__peer_died(ipckit_shm_channel *ch, int64_t *checked, int64_t now) {
  if (now - *checked < IPCKIT_SHM_SLEEP_MS) return 0;
  *checked = now;
  return ch->peer_pid != 0 && !ipckit_shm_alive(ch->peer_pid, ch->peer_tag);
}

/**
 * Sends one message; while the ring is full, spins a little, then sleeps until the peer makes room, for
 * `timeout_ms` at most (negative: no limit).
 *
 * @returns 0, or as ipckit_shm_try_send(), and -ETIMEDOUT (nothing written), -EOWNERDEAD (the peer process died).
 */
static inline int ipckit_shm_send(ipckit_shm_channel *ch, const void *message, size_t length, int timeout_ms) {
  int rc = ipckit_shm_try_send(ch, message, length);
  if (rc != -EAGAIN) return rc;
  unsigned char *h = ch->out.header;
  const int64_t start = ipckit_shm__now_ms();
  const int64_t spin_until = ipckit_shm__now_us() + IPCKIT_SHM_SPIN_US;
  while (ipckit_shm__now_us() < spin_until) {
    for (int i = 0; i < 64; i++) ipckit_shm__relax();
    rc = ipckit_shm_try_send(ch, message, length);
    if (rc != -EAGAIN) return rc;
  }
  int64_t checked = start;
  for (;;) {
    int64_t now = ipckit_shm__now_ms();
    if (ipckit_shm__peer_died(ch, &checked, now)) {
      return ipckit_shm__fail(ch, EOWNERDEAD, "Cannot send on shm channel \"%s\": the peer process died", ch->name);
    }
    int64_t left = timeout_ms < 0 ? IPCKIT_SHM_SLEEP_MS : start + timeout_ms - now;
    if (left <= 0) {
      return ipckit_shm__fail(ch, ETIMEDOUT, "Cannot send on shm channel \"%s\": timed out after %d ms", ch->name,
                              timeout_ms);
    }
    /* Announce the sleep, then try once more: room made before the announcement is found here, room made after it
     * wakes us (or changes R, so the wait returns at once). */
    ipckit_shm__store(h + IPCKIT_SHM__R_PRODUCER_SLEEPING, 1, memory_order_seq_cst);
    uint32_t r = ipckit_shm__load(h + IPCKIT_SHM__R_READ, memory_order_seq_cst);
    rc = ipckit_shm_try_send(ch, message, length);
    if (rc == -EAGAIN &&
        !(ipckit_shm__load(h + IPCKIT_SHM__R_FLAGS, memory_order_acquire) & IPCKIT_SHM_CONSUMER_CLOSED)) {
      ipckit_shm__futex_wait(h + IPCKIT_SHM__R_READ, r, left < IPCKIT_SHM_SLEEP_MS ? left : IPCKIT_SHM_SLEEP_MS);
    }
    ipckit_shm__store(h + IPCKIT_SHM__R_PRODUCER_SLEEPING, 0, memory_order_seq_cst);
    if (rc != -EAGAIN) return rc;
  }
}

/* ---- receiving ---- */

/* The committed record at R: its length (>= 0), -EAGAIN when none is there yet, or a -errno. */
static inline int64_t ipckit_shm__peek(ipckit_shm_channel *ch) {
  const uint32_t cap = ch->capacity;
  const uint32_t r = ch->in.pos;
  if ((r & 7) != 0) {
    ipckit_shm__fail(ch, EPROTO, "Cannot read from shm channel \"%s\": its read position %u is corrupt", ch->name, r);
    return ipckit_shm__break(ch, EPROTO);
  }
  unsigned char *data = ch->in.data;
  const uint32_t at = r & (cap - 1);
  if (ipckit_shm__load(data + at + 4, memory_order_seq_cst) != r + 1) return -EAGAIN;
  const uint32_t n = ipckit_shm__load(data + at, memory_order_relaxed);
  if (n > ch->max_message) {
    ipckit_shm__fail(ch, EPROTO,
                     "Cannot read from shm channel \"%s\": a record of %u bytes, more than the ring holds (%u)",
                     ch->name, n, cap);
    return ipckit_shm__break(ch, EPROTO);
  }
  return n;
}

/**
 * Receives the next message into `buffer` if one is there now.
 *
 * @returns its length (>= 0), or -EAGAIN (none yet), -EPIPE (the peer closed and everything was received), -EBADF
 * (this end is closed), -EMSGSIZE (it is longer than `capacity`: it stays in the ring, and ch->need says its
 * length), -EPROTO (the peer wrote a corrupt record: the channel is broken, and the peer is told).
 */
static inline ssize_t ipckit_shm_try_receive(ipckit_shm_channel *ch, void *buffer, size_t capacity) {
  if (ch->closed || ch->base == NULL) {
    return ipckit_shm__fail(ch, EBADF, "Cannot receive on shm channel \"%s\": it is closed", ch->name);
  }
  if (ch->broken) return -ch->broken;
  int64_t got = ipckit_shm__peek(ch);
  if (got == -EAGAIN &&
      (ipckit_shm__load(ch->in.header + IPCKIT_SHM__R_FLAGS, memory_order_seq_cst) & IPCKIT_SHM_PRODUCER_CLOSED)) {
    /* The peer closed: what it published before the flag is there to be read now. */
    got = ipckit_shm__peek(ch);
    if (got == -EAGAIN) {
      return ipckit_shm__fail(ch, EPIPE, "Cannot receive on shm channel \"%s\": the peer closed it", ch->name);
    }
  }
  if (got < 0) return (ssize_t)got;
  const uint32_t n = (uint32_t)got;
  if (n > capacity) {
    ch->need = n;
    return ipckit_shm__fail(ch, EMSGSIZE,
                            "Cannot receive a message of %u bytes into a buffer of %zu: it stays in the ring for a "
                            "larger one",
                            n, capacity);
  }
  const uint32_t cap = ch->capacity;
  const uint32_t r = ch->in.pos;
  const uint32_t at = r & (cap - 1);
  const uint32_t start = at + 8 == cap ? 0 : at + 8;
  const uint32_t first = n < cap - start ? n : cap - start;
  memcpy(buffer, ch->in.data + start, first);
  if (first < n) memcpy((unsigned char *)buffer + first, ch->in.data, n - first);
  /* Give the space back (after every read of it), then wake the producer if it sleeps for room. */
  ch->in.pos = r + ((8 + n + 7) & ~7u);
  unsigned char *h = ch->in.header;
  ipckit_shm__store(h + IPCKIT_SHM__R_READ, ch->in.pos, memory_order_seq_cst);
  ipckit_shm__wake_if_sleeping(h + IPCKIT_SHM__R_PRODUCER_SLEEPING, h + IPCKIT_SHM__R_READ);
  return (ssize_t)n;
}

/* Whether a record is waiting at R (a corrupt position counts: reading says so). */
static inline int ipckit_shm__readable(ipckit_shm_channel *ch) {
  const uint32_t r = ch->in.pos;
  if ((r & 7) != 0) return 1;
  return ipckit_shm__load(ch->in.data + (r & (ch->capacity - 1)) + 4, memory_order_seq_cst) == r + 1;
}

/**
 * Receives the next message into `buffer`; while there is none, spins a little, then sleeps until the peer sends,
 * for `timeout_ms` at most (negative: no limit).
 *
 * @returns its length, or as ipckit_shm_try_receive(), and -ETIMEDOUT, -EOWNERDEAD (the peer process died, after
 * everything it wrote whole was received).
 */
static inline ssize_t ipckit_shm_receive(ipckit_shm_channel *ch, void *buffer, size_t capacity, int timeout_ms) {
  ssize_t rc = ipckit_shm_try_receive(ch, buffer, capacity);
  if (rc != -EAGAIN) return rc;
  unsigned char *h = ch->in.header;
  const int64_t start = ipckit_shm__now_ms();
  const int64_t spin_until = ipckit_shm__now_us() + IPCKIT_SHM_SPIN_US;
  while (ipckit_shm__now_us() < spin_until) {
    for (int i = 0; i < 64; i++) ipckit_shm__relax();
    rc = ipckit_shm_try_receive(ch, buffer, capacity);
    if (rc != -EAGAIN) return rc;
  }
  int64_t checked = start;
  for (;;) {
    int64_t now = ipckit_shm__now_ms();
    if (ipckit_shm__peer_died(ch, &checked, now)) {
      /* What the peer wrote whole before it died comes first, as a socket delivers its buffer before the end. */
      rc = ipckit_shm_try_receive(ch, buffer, capacity);
      if (rc != -EAGAIN) return rc;
      return ipckit_shm__fail(ch, EOWNERDEAD, "Cannot receive on shm channel \"%s\": the peer process died",
                              ch->name);
    }
    int64_t left = timeout_ms < 0 ? IPCKIT_SHM_SLEEP_MS : start + timeout_ms - now;
    if (left <= 0) {
      return ipckit_shm__fail(ch, ETIMEDOUT, "Cannot receive on shm channel \"%s\": timed out after %d ms",
                              ch->name, timeout_ms);
    }
    /* Announce the sleep, then look again: a message published before the announcement is found here, one
     * published after it wakes us (or changes W, so the wait returns at once). */
    ipckit_shm__store(h + IPCKIT_SHM__R_CONSUMER_SLEEPING, 1, memory_order_seq_cst);
    uint32_t w = ipckit_shm__load(h + IPCKIT_SHM__R_WRITE, memory_order_seq_cst);
    if (!ipckit_shm__readable(ch) &&
        !(ipckit_shm__load(h + IPCKIT_SHM__R_FLAGS, memory_order_seq_cst) & IPCKIT_SHM_PRODUCER_CLOSED)) {
      ipckit_shm__futex_wait(h + IPCKIT_SHM__R_WRITE, w, left < IPCKIT_SHM_SLEEP_MS ? left : IPCKIT_SHM_SLEEP_MS);
    }
    ipckit_shm__store(h + IPCKIT_SHM__R_CONSUMER_SLEEPING, 0, memory_order_seq_cst);
    rc = ipckit_shm_try_receive(ch, buffer, capacity);
    if (rc != -EAGAIN) return rc;
  }
}

/* ---- closing ---- */

/**
 * Closes this end; idempotent. The peer receives what was sent before, then the end (ipckit: ClosedError); its
 * sends fail. Sets the ring flags as ipckit does, wakes every sleeper on the channel, and unmaps the segment.
 *
 * @returns 0.
 */
static inline int ipckit_shm_close(ipckit_shm_channel *ch) {
  if (ch->closed) return 0;
  ch->closed = 1;
  if (ch->base == NULL) return 0;
  atomic_fetch_or(ipckit_shm__word(ch->out.header + IPCKIT_SHM__R_FLAGS), IPCKIT_SHM_PRODUCER_CLOSED);
  atomic_fetch_or(ipckit_shm__word(ch->in.header + IPCKIT_SHM__R_FLAGS), IPCKIT_SHM_CONSUMER_CLOSED);
  ipckit_shm__futex_wake(ch->out.header + IPCKIT_SHM__R_WRITE);
  ipckit_shm__futex_wake(ch->out.header + IPCKIT_SHM__R_READ);
  ipckit_shm__futex_wake(ch->in.header + IPCKIT_SHM__R_WRITE);
  ipckit_shm__futex_wake(ch->in.header + IPCKIT_SHM__R_READ);
  ipckit_shm__release(ch);
  return 0;
}

#endif /* IPCKIT_RING_H */
