// cgo_helpers.h: the only place memif-go includes libmemif. It holds the
// callback adapters with libmemif's exact signatures and the fused fast paths
// that let one cgo crossing do a whole burst.
//
// libmemif is an installed system library (FD.io's libmemif-dev package, or a
// build of upstream extras/libmemif v26.06 installed by hand); see README.md.
#ifndef MEMIF_GO_CGO_HELPERS_H
#define MEMIF_GO_CGO_HELPERS_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libmemif.h>

#ifndef LIBMEMIF_VERSION
#error "memif-go needs libmemif 4.0: libmemif.h does not define LIBMEMIF_VERSION"
#endif
// The preprocessor cannot compare strings, so the check is a negative array
// size: the compiler then names this typedef in its error.
typedef char memif_go_requires_libmemif_4_0
    [__builtin_strcmp (LIBMEMIF_VERSION, "4.0") == 0 ? 1 : -1];

// Go exports (callbacks.go). Contexts are runtime/cgo.Handle values: C never
// stores a Go pointer.
extern int memifGoOnConnect (uintptr_t h);
extern int memifGoOnDisconnect (uintptr_t h);
extern int memifGoOnInterrupt (uintptr_t h, uint16_t qid);
extern int memifGoOnControlFDUpdate (uintptr_t h, int fd, uint32_t type,
				     void *data);
extern int memifGoAddExtRegion (uintptr_t h, uint32_t size, void **addr,
				int *fd);
extern void *memifGoGetExtRegionAddr (uintptr_t h, uint32_t size, int fd);
extern int memifGoDelExtRegion (uintptr_t h, void *addr, uint32_t size,
				int fd);
extern uint32_t memifGoGetExtBufferOffset (uintptr_t h);

static int
memifgo_on_connect (memif_conn_handle_t conn, void *ctx)
{
  return memifGoOnConnect ((uintptr_t) ctx);
}

static int
memifgo_on_disconnect (memif_conn_handle_t conn, void *ctx)
{
  return memifGoOnDisconnect ((uintptr_t) ctx);
}

static int
memifgo_on_interrupt (memif_conn_handle_t conn, void *ctx, uint16_t qid)
{
  return memifGoOnInterrupt ((uintptr_t) ctx, qid);
}

static int
memifgo_on_control_fd_update (memif_fd_event_t fde, void *ctx)
{
  return memifGoOnControlFDUpdate ((uintptr_t) ctx, fde.fd,
				   (uint32_t) fde.type, fde.private_ctx);
}

// External-region callbacks get the connection's private_ctx (a Conn handle).
static int
memifgo_add_ext_region (void **addr, uint32_t size, int *fd, void *ctx)
{
  return memifGoAddExtRegion ((uintptr_t) ctx, size, addr, fd);
}

static void *
memifgo_get_ext_region_addr (uint32_t size, int fd, void *ctx)
{
  return memifGoGetExtRegionAddr ((uintptr_t) ctx, size, fd);
}

static int
memifgo_del_ext_region (void *addr, uint32_t size, int fd, void *ctx)
{
  return memifGoDelExtRegion ((uintptr_t) ctx, addr, size, fd);
}

static uint32_t
memifgo_get_ext_buffer_offset (void *ctx)
{
  return memifGoGetExtBufferOffset ((uintptr_t) ctx);
}

static int
memifgo_create_socket (memif_socket_handle_t *sock, memif_socket_args_t *args,
		       uintptr_t h, int with_fd_update)
{
  args->on_control_fd_update =
    with_fd_update ? memifgo_on_control_fd_update : NULL;
  return memif_create_socket (sock, args, (void *) h);
}

static void
memifgo_register_external_region (memif_socket_handle_t sock, int with_offset)
{
  memif_register_external_region (
    sock, memifgo_add_ext_region, memifgo_get_ext_region_addr,
    memifgo_del_ext_region,
    with_offset ? memifgo_get_ext_buffer_offset : NULL);
}

static int
memifgo_create (memif_conn_handle_t *conn, memif_conn_args_t *args,
		uintptr_t h, int with_interrupt)
{
  return memif_create (conn, args, memifgo_on_connect, memifgo_on_disconnect,
		       with_interrupt ? memifgo_on_interrupt : NULL,
		       (void *) h);
}

// memif_conn_args_t.mode is a bit-field, which cgo cannot set.
static void
memifgo_set_mode (memif_conn_args_t *args, uint8_t mode)
{
  args->mode = (memif_interface_mode_t) mode;
}

static int
memifgo_set_timer (memif_socket_handle_t sock, int64_t ns)
{
  struct itimerspec t;
  memset (&t, 0, sizeof (t));
  t.it_value.tv_sec = ns / 1000000000;
  t.it_value.tv_nsec = ns % 1000000000;
  t.it_interval = t.it_value;
  return memif_set_connection_request_timer (sock, t);
}

// memif_get_details packs its region and queue arrays right after the
// strings, unaligned: copy elements out bytewise.
static void
memifgo_region_at (const memif_details_t *md, int i,
		   memif_region_details_t *out)
{
  memcpy (out, (const char *) md->regions + i * sizeof (*out), sizeof (*out));
}

static void
memifgo_queue_at (const memif_queue_details_t *q, int i,
		  memif_queue_details_t *out)
{
  memcpy (out, (const char *) q + i * sizeof (*out), sizeof (*out));
}

// Hot-path wrappers return the count and the error code packed in one value
// (count in the low 16 bits, memif_err_t above), so no Go pointer crosses and
// nothing escapes to the heap.
#define MEMIFGO_PACK(err, n) (((int64_t) (err) << 16) | (int64_t) (n))

static int64_t
memifgo_rx_burst (memif_conn_handle_t conn, uint16_t qid,
		  memif_buffer_t *bufs, uint16_t count)
{
  uint16_t rx = 0;
  int err = memif_rx_burst (conn, qid, bufs, count, &rx);
  return MEMIFGO_PACK (err, rx);
}

// Fused receive: give back the previous burst's buffers and take the next
// burst in one crossing.
static int64_t
memifgo_refill_rx_burst (memif_conn_handle_t conn, uint16_t qid,
			 uint16_t refill, uint16_t headroom,
			 memif_buffer_t *bufs, uint16_t count)
{
  uint16_t rx = 0;
  int err;
  if (refill)
    {
      err = memif_refill_queue (conn, qid, refill, headroom);
      if (err != MEMIF_ERR_SUCCESS)
	return MEMIFGO_PACK (err, 0);
    }
  err = memif_rx_burst (conn, qid, bufs, count, &rx);
  return MEMIFGO_PACK (err, rx);
}

static int64_t
memifgo_tx_burst (memif_conn_handle_t conn, uint16_t qid,
		  memif_buffer_t *bufs, uint16_t count)
{
  uint16_t tx = 0;
  int err = memif_tx_burst (conn, qid, bufs, count, &tx);
  return MEMIFGO_PACK (err, tx);
}

static int64_t
memifgo_buffer_alloc (memif_conn_handle_t conn, uint16_t qid,
		      memif_buffer_t *bufs, uint16_t count, uint16_t size)
{
  uint16_t n = 0;
  int err = memif_buffer_alloc (conn, qid, bufs, count, &n, size);
  return MEMIFGO_PACK (err, n);
}

// A master's tx descriptors have the lengths the slave gave them, unknown
// here, and memif_buffer_alloc writes one memif_buffer_t per segment with no
// bound. Allocate packet by packet and stop while the batch can still hold
// the worst case (worst segments) of one more packet.
static int64_t
memifgo_buffer_alloc_bounded (memif_conn_handle_t conn, uint16_t qid,
			      memif_buffer_t *bufs, uint16_t nbufs,
			      uint16_t count, uint16_t size, uint16_t worst)
{
  uint16_t used = 0, n;
  int err = MEMIF_ERR_SUCCESS;
  for (uint16_t k = 0; k < count && nbufs - used >= worst; k++)
    {
      n = 0;
      err = memif_buffer_alloc (conn, qid, bufs + used, 1, &n, size);
      used += n;
      if (err != MEMIF_ERR_SUCCESS || n == 0)
	break;
    }
  return MEMIFGO_PACK (err, used);
}

static int64_t
memifgo_buffer_enq_tx (memif_conn_handle_t conn, uint16_t qid,
		       memif_buffer_t *bufs, uint16_t count)
{
  uint16_t n = 0;
  int err = memif_buffer_enq_tx (conn, qid, bufs, count, &n);
  return MEMIFGO_PACK (err, n);
}

#endif // MEMIF_GO_CGO_HELPERS_H
