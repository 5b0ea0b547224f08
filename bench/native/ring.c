/*
 * The native floor of ipckit's shared-memory channel (issue 18): the same single-producer single-consumer ring of
 * variable-size records as shm/ring.ts, in plain C11 between two processes, so that the JavaScript figures can be
 * read as a ratio to what the machine does without a runtime in the way.
 *
 * The record layout is ipckit's: a record starts at data offset P mod C (P a position, a multiple of 8) with an
 * 8-byte header (a 32-bit length n, then a 32-bit commit word equal to P + 1 once the record is published), the n
 * payload bytes follow, continuing at data offset 0 past the end of the area, and the record takes 8 + n rounded up
 * to a multiple of 8 bytes. The consumer watches only the commit word of the record at its read position R; the
 * producer reads R only when its cached copy says there is no room, and zeroes the commit word where the next
 * record will start (when that is free space) before publishing, so stale bytes never pass for a commit. A batch
 * is published by one release store: the first record's commit word, written after all the others.
 *
 * Measures, in one run, and prints ONE line of JSON on stdout (figures in microseconds, per second, bytes):
 *   roundTrip8     8-byte ping-pong over two rings, each round trip timed with CLOCK_MONOTONIC (sorted samples)
 *   oneWay64       64-byte messages one way, each published on its own
 *   oneWay64Batch  the same, published once per 64 messages
 *   oneWay64K      64 KiB messages, the consumer copying each into one reused buffer
 * The consumer always copies the payload out (it is touched), as a JavaScript receiver does.
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -o ring ring.c
 *   ./ring [--rounds N] [--messages N] [--big N] [--cpu A,B]
 *
 * --cpu pins the parent to CPU A and the child to CPU B (sched_setaffinity); A == B shares one core, where the
 * spinning sides yield to each other (sched_yield every few polls) instead of burning their time slices.
 * Errors go to stderr with exit status 1. The child dies with the parent (PR_SET_PDEATHSIG) and the parent reaps
 * it; a parent whose child died stops waiting for it.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE 64
#define CAPACITY (1u << 20) /* data bytes per ring: a power of two, > 64 KiB + 8 */
#define BATCH 64
#define BIG (64u * 1024u)

/* Positions on their own cache lines, as in shm/ring.ts: the producer's line and the consumer's line never share. */
struct ring {
  _Alignas(LINE) _Atomic uint32_t write; /* W: bytes published (kept for the layout; the consumer never reads it) */
  _Alignas(LINE) _Atomic uint32_t read;  /* R: bytes consumed, published by the consumer */
  _Alignas(LINE) unsigned char data[CAPACITY];
};

/* One side's private view: its position and its cached copy of the other side's. */
struct end {
  struct ring *ring;
  uint32_t pos;  /* producer: W; consumer: R */
  uint32_t seen; /* producer: last R read; consumer: last R published */
};

static pid_t child_pid;   /* in the parent: the child, watched while waiting (-1 once reaped); 0 in the child */
static int child_status;  /* its wait status once reaped */
static pid_t parent_pid;  /* in the child: the parent it must not outlive */
static int shared_core;   /* both sides on one CPU: yield while waiting */
/* Polls between two calls of waiting(): few when the core is shared (the peer cannot run while this side spins). */
static unsigned polls_per_check = 4096;
static volatile unsigned char sink; /* keeps the consumer's copies from being optimised away */

static void die(const char *what, const char *detail) {
  fprintf(stderr, "ring: Cannot %s: %s\n", what, detail);
  exit(1);
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/*
 * Called every polls_per_check polls of a wait: gives the core away when shared, and notices a dead peer. A child
 * reaped here may have published what the parent waits for just before exiting, so the parent gives up only at the
 * next check, after another polls_per_check polls.
 */
static void waiting(void) {
  if (shared_core) sched_yield();
  if (child_pid > 0) {
    if (waitpid(child_pid, &child_status, WNOHANG) == child_pid) child_pid = -1;
  } else if (child_pid < 0) {
    char detail[96];
    snprintf(detail, sizeof detail, "the child process ended before the end of the run (%s %d)",
             WIFSIGNALED(child_status) ? "signal" : "exit status",
             WIFSIGNALED(child_status) ? WTERMSIG(child_status) : WEXITSTATUS(child_status));
    die("finish the run", detail);
  } else if (getppid() != parent_pid) {
    _exit(1);
  }
}

static _Atomic uint32_t *commit_word(struct ring *r, uint32_t pos) {
  return (_Atomic uint32_t *)(void *)(r->data + (pos & (CAPACITY - 1)) + 4);
}

static uint32_t record_size(uint32_t n) {
  return (8u + n + 7u) & ~7u;
}

/* Copies into the data area at position pos, wrapping at its end. */
static void put(struct ring *r, uint32_t pos, const void *src, uint32_t n) {
  uint32_t at = pos & (CAPACITY - 1);
  uint32_t first = n < CAPACITY - at ? n : CAPACITY - at;
  memcpy(r->data + at, src, first);
  if (first < n) memcpy(r->data, (const unsigned char *)src + first, n - first);
}

/* Copies out of the data area from position pos, wrapping at its end. */
static void get(const struct ring *r, uint32_t pos, void *dst, uint32_t n) {
  uint32_t at = pos & (CAPACITY - 1);
  uint32_t first = n < CAPACITY - at ? n : CAPACITY - at;
  memcpy(dst, r->data + at, first);
  if (first < n) memcpy((unsigned char *)dst + first, r->data, n - first);
}

/* Waits until `bytes` more fit, re-reading R only when the cached copy says they do not. */
static void wait_room(struct end *p, uint32_t bytes) {
  unsigned polls = 0;
  while (CAPACITY - (p->pos - p->seen) < bytes) {
    p->seen = atomic_load_explicit(&p->ring->read, memory_order_acquire);
    if (CAPACITY - (p->pos - p->seen) >= bytes) break;
    if (++polls % polls_per_check == 0) waiting();
  }
}

/* Writes one record at the producer's position without publishing it; returns its position. */
static uint32_t write_record(struct end *p, const void *msg, uint32_t n) {
  uint32_t at = p->pos;
  uint32_t len = n;
  put(p->ring, at, &len, 4);
  put(p->ring, at + 8, msg, n);
  p->pos = at + record_size(n);
  return at;
}

/* Publishes the records from `first` to the producer's position with one release store (see the top comment). */
static void publish(struct end *p, uint32_t first) {
  /* The next record's commit word: zero it when it is free space (else it is the oldest unread record's). */
  if (p->pos - p->seen < CAPACITY) atomic_store_explicit(commit_word(p->ring, p->pos), 0, memory_order_relaxed);
  for (uint32_t at = first + record_size(*(uint32_t *)(void *)(p->ring->data + (first & (CAPACITY - 1))));
       at != p->pos;) {
    uint32_t n = *(uint32_t *)(void *)(p->ring->data + (at & (CAPACITY - 1)));
    atomic_store_explicit(commit_word(p->ring, at), at + 1, memory_order_relaxed);
    at += record_size(n);
  }
  atomic_store_explicit(commit_word(p->ring, first), first + 1, memory_order_release);
  atomic_store_explicit(&p->ring->write, p->pos, memory_order_relaxed);
}

static void send_one(struct end *p, const void *msg, uint32_t n) {
  wait_room(p, record_size(n) + 8); /* + 8: room to zero the next commit word too */
  publish(p, write_record(p, msg, n));
}

/* Sends `count` messages of n bytes as batches of up to BATCH, each published once. */
static void send_batches(struct end *p, const void *msg, uint32_t n, long count) {
  for (long i = 0; i < count; i += BATCH) {
    long k = count - i < BATCH ? count - i : BATCH;
    wait_room(p, (uint32_t)k * record_size(n) + 8);
    uint32_t first = write_record(p, msg, n);
    for (long j = 1; j < k; j++) write_record(p, msg, n);
    publish(p, first);
  }
}

/* Takes the next message into dst (room for max bytes), waiting for it; publishes R lazily, as described inside. */
static uint32_t receive(struct end *c, void *dst, uint32_t max) {
  unsigned polls = 0;
  _Atomic uint32_t *word = commit_word(c->ring, c->pos);
  while (atomic_load_explicit(word, memory_order_acquire) != c->pos + 1) {
    /* Nothing yet: the producer may be waiting for room, so publish what was consumed before waiting. */
    if (c->seen != c->pos) {
      c->seen = c->pos;
      atomic_store_explicit(&c->ring->read, c->pos, memory_order_release);
    }
    if (++polls % polls_per_check == 0) waiting();
  }
  uint32_t n;
  get(c->ring, c->pos, &n, 4);
  if (n > max) die("read a record", "its length is larger than expected");
  get(c->ring, c->pos + 8, dst, n);
  c->pos += record_size(n);
  /* Publish R at least every quarter of the ring, so a fast producer never finds it full for long. */
  if (c->pos - c->seen >= CAPACITY / 4) {
    c->seen = c->pos;
    atomic_store_explicit(&c->ring->read, c->pos, memory_order_release);
  }
  return n;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples. */
static double percentile(const double *xs, long n, double p) {
  long i = (long)((p / 100.0) * (double)n + 0.999999999) - 1;
  if (i < 0) i = 0;
  if (i >= n) i = n - 1;
  return xs[i];
}

static long parse_count(const char *flag, const char *text) {
  char *end;
  errno = 0;
  long v = text == NULL ? 0 : strtol(text, &end, 10);
  if (text == NULL || errno != 0 || *end != '\0' || v < 1 || v > 1000000000L) {
    fprintf(stderr, "ring: Cannot parse %s: expected an integer from 1 to 10^9, got \"%s\"\n", flag,
            text == NULL ? "" : text);
    exit(1);
  }
  return v;
}

static void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    char detail[96];
    snprintf(detail, sizeof detail, "CPU %d: %s", cpu, strerror(errno));
    die("pin to a CPU", detail);
  }
}

/* The child: echoes the round trips, then consumes the three one-way runs, acknowledging the end of each. */
static void child(struct end *in, struct end *out, long rounds, long messages, long big, unsigned char *buf) {
  unsigned char small[64];
  unsigned char x = 0;
  for (long i = 0; i < rounds; i++) {
    uint32_t n = receive(in, small, sizeof small);
    send_one(out, small, n);
  }
  for (int run = 0; run < 2; run++) {
    for (long i = 0; i < messages; i++) {
      receive(in, small, sizeof small);
      x ^= small[63];
    }
    send_one(out, small, 8);
  }
  for (long i = 0; i < big; i++) {
    receive(in, buf, BIG);
    x ^= buf[BIG - 1];
  }
  sink = x;
  send_one(out, small, 8);
}

int main(int argc, char **argv) {
  long rounds = 200000, messages = 20000000, big = 100000;
  int cpu[2] = {-1, -1};
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(argv[i], "--rounds") == 0) rounds = parse_count("--rounds", v), i++;
    else if (strcmp(argv[i], "--messages") == 0) messages = parse_count("--messages", v), i++;
    else if (strcmp(argv[i], "--big") == 0) big = parse_count("--big", v), i++;
    else if (strcmp(argv[i], "--cpu") == 0) {
      char extra;
      if (v == NULL || sscanf(v, "%d,%d%c", &cpu[0], &cpu[1], &extra) != 2 || cpu[0] < 0 || cpu[1] < 0 ||
          cpu[0] >= CPU_SETSIZE || cpu[1] >= CPU_SETSIZE) {
        fprintf(stderr, "ring: Cannot parse --cpu: expected two CPU numbers \"A,B\", got \"%s\"\n", v ? v : "");
        return 1;
      }
      i++;
    } else {
      fprintf(stderr, "ring: Cannot parse the arguments: unknown \"%s\" (usage: ring [--rounds N] [--messages N] "
                      "[--big N] [--cpu A,B])\n", argv[i]);
      return 1;
    }
  }
  shared_core = cpu[0] >= 0 && cpu[0] == cpu[1];
  if (shared_core) polls_per_check = 8;

  /* Two rings (parent -> child, child -> parent) in one shared anonymous mapping, zeroed by the kernel. */
  struct ring *rings = mmap(NULL, 2 * sizeof(struct ring), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (rings == MAP_FAILED) die("map the rings", strerror(errno));
  unsigned char *buf = malloc(BIG);
  double *samples = malloc((size_t)rounds * sizeof *samples);
  if (buf == NULL || samples == NULL) die("allocate the buffers", strerror(errno));
  memset(buf, 0xab, BIG);

  parent_pid = getpid();
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) die("start the child process", strerror(errno));
  if (pid == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(1);
    if (getppid() != parent_pid) _exit(1); /* the parent died before prctl */
    if (cpu[1] >= 0) pin(cpu[1]);
    struct end in = {&rings[0], 0, 0}, out = {&rings[1], 0, 0};
    child(&in, &out, rounds, messages, big, buf);
    _exit(0);
  }
  child_pid = pid;
  if (cpu[0] >= 0) pin(cpu[0]);
  struct end out = {&rings[0], 0, 0}, in = {&rings[1], 0, 0};
  unsigned char small[64];
  memset(small, 0x5a, sizeof small);

  /* Round trips, each timed on its own. */
  double sum = 0;
  for (long i = 0; i < rounds; i++) {
    double t0 = now();
    send_one(&out, small, 8);
    receive(&in, small, sizeof small);
    samples[i] = (now() - t0) * 1e6;
    sum += samples[i];
  }
  qsort(samples, (size_t)rounds, sizeof *samples, by_value);

  /* One way: the clock runs from the first message to the consumer's acknowledgement of the last. */
  double rate[3];
  for (int run = 0; run < 3; run++) {
    long count = run < 2 ? messages : big;
    double t0 = now();
    if (run == 0) for (long i = 0; i < count; i++) send_one(&out, small, 64);
    if (run == 1) send_batches(&out, small, 64, count);
    if (run == 2) for (long i = 0; i < count; i++) send_one(&out, buf, BIG);
    receive(&in, small, sizeof small);
    rate[run] = (double)count / (now() - t0);
  }

  if (child_pid > 0 && waitpid(pid, &child_status, 0) != pid) die("reap the child process", strerror(errno));
  if (!WIFEXITED(child_status) || WEXITSTATUS(child_status) != 0) die("finish the run", "the child process failed");
  char cpus[32] = "null";
  if (cpu[0] >= 0) snprintf(cpus, sizeof cpus, "[%d,%d]", cpu[0], cpu[1]);
  printf("{\"roundTrip8\":{\"count\":%ld,\"p50\":%.4f,\"p99\":%.4f,\"p999\":%.4f,\"max\":%.4f,\"mean\":%.4f},"
         "\"oneWay64\":{\"count\":%ld,\"msgsPerSec\":%.0f},"
         "\"oneWay64Batch\":{\"count\":%ld,\"batch\":%d,\"msgsPerSec\":%.0f},"
         "\"oneWay64K\":{\"count\":%ld,\"msgsPerSec\":%.3f,\"bytesPerSec\":%.0f},"
         "\"cpus\":%s,\"sharedCore\":%s}\n",
         rounds, percentile(samples, rounds, 50), percentile(samples, rounds, 99), percentile(samples, rounds, 99.9),
         samples[rounds - 1], sum / (double)rounds, messages, rate[0], messages, BATCH, rate[1], big, rate[2],
         rate[2] * BIG, cpus, shared_core ? "true" : "false");
  return 0;
}
