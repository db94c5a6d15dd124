// own.h: who may run a queue's hot path, with no lock and no atomic
// read-modify-write (issue #11). Included by descriptors.h; own.c holds the
// slow side (one copy for the whole program: cgo compiles each Go file's
// preamble apart, so shared state cannot live in a header).
//
// A queue has an owner: the record of one OS thread. A goroutine stays on
// one thread for a whole cgo call and a thread runs one call at a time, so
// a burst by the owner thread is alone on the queue by construction. The
// owner marks the queue it is in (rec->inside) for the length of the burst:
// that is all a disconnect (or a new owner) waits for.
//
// Fast side (every burst): store inside = q, compiler barrier, check the
// owner and the guard's down flag again. Slow side (a claim, under the
// queue's Go mutex; a disconnect or revocation, under every queue mutex):
// store owner (or down), membarrier(PRIVATE_EXPEDITED), wait until no other
// record is inside. membarrier puts a full barrier on every running thread
// of the process, so either the fast side's store of inside is seen by the
// scan, or its load of owner/down comes after the barrier and sees the new
// value: the Dekker pair needs no fence on the fast side. Without
// membarrier (old kernel, seccomp) the fast side stores inside with seq_cst
// instead, chosen once before the first record exists.
#ifndef MEMIF_GO_OWN_H
#define MEMIF_GO_OWN_H

#include <stdint.h>

// One cache line pair per record: every burst writes its thread's inside
// twice, and two bursting threads must not share a line (records sat side
// by side in the heap: false sharing on every burst, measured).
typedef struct __attribute__ ((aligned (128))) memifgo_rec
{
  const void *inside;	    // the queue this thread bursts on, or NULL
  const void *inside2;	    // the second queue of a two-queue burst, or NULL
  struct memifgo_rec *next; // every record ever made (never freed)
  int used;		    // held by a live thread
} memifgo_rec_t;

// This thread's record, NULL until its first claim. Initial-exec, as the
// Go runtime's own TLS: a plain %fs-relative load.
extern __thread memifgo_rec_t *memifgo_self
  __attribute__ ((tls_model ("initial-exec")));
extern int memifgo_own_fence; // 1: no membarrier, the fast side fences

// What a hot entry point returns instead of running, in the code field of
// its result (MEMIFGO_FP): own.go turns them into a claim or an error.
#define MEMIFGO_OWN_SLOW 0x2000	  // not this thread's queue: claim it
#define MEMIFGO_OWN_DOWN 0x2001	  // the link went down
#define MEMIFGO_OWN_NESTED 0x2002 // a burst from inside a burst's callback
#define MEMIFGO_OWN_NOMEM 0x2003  // no memory for this thread's record

int memifgo_own_claim (memifgo_rec_t **owner, const uint8_t *down,
		       const void *q);
int memifgo_own_claim2 (memifgo_rec_t **owner, const uint8_t *down,
			const void *q, memifgo_rec_t **owner2,
			const uint8_t *down2, const void *q2);
void memifgo_own_sync (void);
void memifgo_own_wait (const void *lo, const void *hi);
int memifgo_own_force_fence (void);
uint64_t memifgo_own_claims (void);

// Enter queue q (owner and down are its guard's fields) before a burst: 0,
// or a MEMIFGO_OWN_* code and nothing entered. claim (the caller holds the
// queue's Go mutex) makes this thread the owner first.
static inline int
memifgo_enter (memifgo_rec_t **owner, const uint8_t *down, const void *q,
	       int claim)
{
  memifgo_rec_t *r = memifgo_self;
  if (__builtin_expect (claim, 0))
    return memifgo_own_claim (owner, down, q);
  if (__builtin_expect (!r || __atomic_load_n (owner, __ATOMIC_RELAXED) != r
			  || r->inside,
			0))
    // Inside already: a callback of this thread's burst (an
    // ExternalBufferOffsetter) bursting again, which libmemif cannot take.
    return r && r->inside ? MEMIFGO_OWN_NESTED : MEMIFGO_OWN_SLOW;
  if (__builtin_expect (memifgo_own_fence, 0))
    __atomic_store_n (&r->inside, q, __ATOMIC_SEQ_CST);
  else
    {
      __atomic_store_n (&r->inside, q, __ATOMIC_RELAXED);
      __atomic_signal_fence (__ATOMIC_SEQ_CST); // compiler barrier only
    }
  // seq_cst loads: plain loads on x86, ldar on arm64 (never the weaker
  // ldapr, which a preceding seq_cst store in fence mode would not order).
  if (__builtin_expect (__atomic_load_n (owner, __ATOMIC_SEQ_CST) != r
			  || __atomic_load_n (down, __ATOMIC_SEQ_CST),
			0))
    {
      __atomic_store_n (&r->inside, NULL, __ATOMIC_RELEASE);
      return __atomic_load_n (down, __ATOMIC_RELAXED) ? MEMIFGO_OWN_DOWN
						       : MEMIFGO_OWN_SLOW;
    }
  return 0;
}

// Leave the queue entered last: the burst's writes are released to
// whoever waits for it.
static inline void
memifgo_leave (void)
{
  __atomic_store_n (&memifgo_self->inside, NULL, __ATOMIC_RELEASE);
}

// memifgo_enter for a burst on two queues at once (a fused forward): this
// thread must own both; they are marked together and left together.
static inline int
memifgo_enter2 (memifgo_rec_t **owner, const uint8_t *down, const void *q,
		memifgo_rec_t **owner2, const uint8_t *down2, const void *q2,
		int claim)
{
  memifgo_rec_t *r = memifgo_self;
  if (__builtin_expect (claim, 0))
    return memifgo_own_claim2 (owner, down, q, owner2, down2, q2);
  if (__builtin_expect (!r || __atomic_load_n (owner, __ATOMIC_RELAXED) != r
			  || __atomic_load_n (owner2, __ATOMIC_RELAXED) != r
			  || r->inside,
			0))
    return r && r->inside ? MEMIFGO_OWN_NESTED : MEMIFGO_OWN_SLOW;
  __atomic_store_n (&r->inside2, q2, __ATOMIC_RELAXED);
  __atomic_store_n (&r->inside, q, __ATOMIC_RELAXED);
  if (__builtin_expect (memifgo_own_fence, 0))
    __atomic_thread_fence (__ATOMIC_SEQ_CST);
  else
    __atomic_signal_fence (__ATOMIC_SEQ_CST);
  if (__builtin_expect (__atomic_load_n (owner, __ATOMIC_SEQ_CST) != r
			  || __atomic_load_n (owner2, __ATOMIC_SEQ_CST) != r
			  || __atomic_load_n (down, __ATOMIC_SEQ_CST)
			  || __atomic_load_n (down2, __ATOMIC_SEQ_CST),
			0))
    {
      __atomic_store_n (&r->inside2, NULL, __ATOMIC_RELEASE);
      __atomic_store_n (&r->inside, NULL, __ATOMIC_RELEASE);
      return __atomic_load_n (down, __ATOMIC_RELAXED)
		 || __atomic_load_n (down2, __ATOMIC_RELAXED)
	       ? MEMIFGO_OWN_DOWN
	       : MEMIFGO_OWN_SLOW;
    }
  return 0;
}

static inline void
memifgo_leave2 (void)
{
  __atomic_store_n (&memifgo_self->inside2, NULL, __ATOMIC_RELEASE);
  __atomic_store_n (&memifgo_self->inside, NULL, __ATOMIC_RELEASE);
}

#endif // MEMIF_GO_OWN_H
