//go:build linux && cgo

// own.c: the slow side of queue ownership (own.h): thread records, claims,
// and waiting for bursts to leave. Control path only.
#define _GNU_SOURCE
#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "own.h"

__thread memifgo_rec_t *memifgo_self
  __attribute__ ((tls_model ("initial-exec")));
int memifgo_own_fence;

static memifgo_rec_t *recs; // list head, prepended under mu, read lock-free
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static int inited, force_fence;
static uint64_t claims; // owner changes, for tests

static long
membarrier (int cmd)
{
  return syscall (__NR_membarrier, cmd, 0, 0);
}

// A thread that exits gives its record back for the next new thread. A
// record still named owner of a queue is then harmless: a thread reusing
// it is alone on it too, and scans see it (records stay on the list).
static void
release (void *p)
{
  memifgo_rec_t *r = p;
  pthread_mutex_lock (&mu);
  r->used = 0;
  pthread_mutex_unlock (&mu);
  memifgo_self = NULL;
}

static void
init (void)
{
  pthread_key_create (&key, release);
  if (force_fence
      || membarrier (MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0)
    memifgo_own_fence = 1;
  __atomic_store_n (&inited, 1, __ATOMIC_RELEASE);
}

// For tests: the seq_cst fallback, if no record exists yet. 1 if in force.
int
memifgo_own_force_fence (void)
{
  force_fence = 1;
  pthread_once (&once, init);
  return memifgo_own_fence;
}

uint64_t
memifgo_own_claims (void)
{
  return __atomic_load_n (&claims, __ATOMIC_RELAXED);
}

static memifgo_rec_t *
self_record (void)
{
  memifgo_rec_t *r;
  if (memifgo_self)
    return memifgo_self;
  pthread_once (&once, init);
  pthread_mutex_lock (&mu);
  for (r = recs; r && r->used; r = r->next)
    ;
  if (!r && (r = aligned_alloc (_Alignof (memifgo_rec_t), sizeof (*r))))
    {
      memset (r, 0, sizeof (*r));
      r->next = recs;
      __atomic_store_n (&recs, r, __ATOMIC_RELEASE);
    }
  if (r)
    r->used = 1;
  pthread_mutex_unlock (&mu);
  if (r)
    {
      pthread_setspecific (key, r);
      memifgo_self = r;
    }
  return r;
}

// A full barrier on every running thread of the process (membarrier), or on
// this one when the fast side fences itself.
void
memifgo_own_sync (void)
{
  if (memifgo_own_fence)
    __atomic_thread_fence (__ATOMIC_SEQ_CST);
  else
    membarrier (MEMBARRIER_CMD_PRIVATE_EXPEDITED); // cannot fail once registered
}

static void
backoff (unsigned *spins)
{
  if (++*spins < 64)
    {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause ();
#elif defined(__aarch64__)
      __asm__ volatile ("yield");
#endif
    }
  else if (*spins < 1024)
    sched_yield ();
  else // a burst parked in a callback: do not burn a CPU on it
    nanosleep (&(struct timespec){ 0, 50000 }, NULL);
}

// Wait until no thread is inside a queue in [lo, hi). The caller stored the
// new owner or down flag and synced first. A record made meanwhile cannot
// be inside: entering needs ownership, which needs the lock the caller
// holds (a reused record is on the list already). A caller inside one of
// those queues itself (a callback of its burst) waits forever, as it did
// on the queue's mutex before; BufferRequeue refuses that case first.
void
memifgo_own_wait (const void *lo, const void *hi)
{
  for (memifgo_rec_t *r = __atomic_load_n (&recs, __ATOMIC_ACQUIRE); r;
       r = r->next)
    {
      unsigned spins = 0;
      const char *in, *in2;
      for (;;)
	{
	  in = __atomic_load_n (&r->inside, __ATOMIC_ACQUIRE);
	  in2 = __atomic_load_n (&r->inside2, __ATOMIC_ACQUIRE);
	  if (!(in && in >= (const char *) lo && in < (const char *) hi)
	      && !(in2 && in2 >= (const char *) lo && in2 < (const char *) hi))
	    break;
	  backoff (&spins);
	}
    }
}

// Make this thread queue q's owner and enter it (own.h). The caller holds
// the queue's Go mutex, so no other claim, revocation or disconnect of q
// runs meanwhile.
int
memifgo_own_claim (memifgo_rec_t **owner, const uint8_t *down, const void *q)
{
  memifgo_rec_t *r = self_record ();
  if (!r)
    return MEMIFGO_OWN_NOMEM;
  if (r->inside)
    return MEMIFGO_OWN_NESTED;
  if (__atomic_load_n (down, __ATOMIC_ACQUIRE))
    return MEMIFGO_OWN_DOWN;
  if (__atomic_load_n (owner, __ATOMIC_RELAXED) != r)
    {
      __atomic_add_fetch (&claims, 1, __ATOMIC_RELAXED);
      __atomic_store_n (owner, r, __ATOMIC_RELAXED);
      memifgo_own_sync ();
      memifgo_own_wait (q, (const char *) q + 1);
    }
  __atomic_store_n (&r->inside, q, __ATOMIC_RELEASE);
  return 0;
}

// memifgo_own_claim for two queues (memifgo_enter2); the caller holds both
// queues' Go mutexes.
int
memifgo_own_claim2 (memifgo_rec_t **owner, const uint8_t *down, const void *q,
		    memifgo_rec_t **owner2, const uint8_t *down2,
		    const void *q2)
{
  memifgo_rec_t *r = self_record ();
  if (!r)
    return MEMIFGO_OWN_NOMEM;
  if (r->inside)
    return MEMIFGO_OWN_NESTED;
  if (__atomic_load_n (down, __ATOMIC_ACQUIRE)
      || __atomic_load_n (down2, __ATOMIC_ACQUIRE))
    return MEMIFGO_OWN_DOWN;
  if (__atomic_load_n (owner, __ATOMIC_RELAXED) != r
      || __atomic_load_n (owner2, __ATOMIC_RELAXED) != r)
    {
      __atomic_add_fetch (&claims, 1, __ATOMIC_RELAXED);
      __atomic_store_n (owner, r, __ATOMIC_RELAXED);
      __atomic_store_n (owner2, r, __ATOMIC_RELAXED);
      memifgo_own_sync ();
      memifgo_own_wait (q, (const char *) q + 1);
      memifgo_own_wait (q2, (const char *) q2 + 1);
    }
  __atomic_store_n (&r->inside2, q2, __ATOMIC_RELEASE);
  __atomic_store_n (&r->inside, q, __ATOMIC_RELEASE);
  return 0;
}
