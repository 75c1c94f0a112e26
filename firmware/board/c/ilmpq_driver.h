/*
 * ilmpq_driver.h -- bare-metal C99 driver of the ilmpq accelerator.
 *
 * What it does: checks that the hardware is the configuration of the ilmpq_regs.h it is compiled
 * with (identity registers), copies the compiled memory image and the input into DMA memory with
 * the cache maintenance the non-coherent HP port needs, runs one program at a time (program
 * address and length, DMA window, watchdog), waits for the end by polling STATUS with a timeout,
 * turns a latched hardware error into a specific return code, and reads the performance counters.
 * It is the C counterpart of ilmpq.firmware.driver (Python). A network the compiler placed
 * entirely on the accelerator (pooling included) is one program per frame: ilmpq_infer writes the
 * input, runs it and reads the output, with no per-layer host work; layers the compiler left on the
 * host (its report names them) are the application's job.
 *
 * Build: copy ilmpq_driver.c/.h next to the ilmpq_regs.h of your bitstream (ilmpq build and
 * ilmpq verilog write it; firmware/board/c/ilmpq_regs.h is the z020 one) and compile with any C99
 * compiler. The driver uses only <stdint.h>, <stddef.h> and memcpy from <string.h>: no heap, no
 * stdio, no global state, so several accelerators can be driven from one program.
 *
 * All hardware access goes through a HAL of function pointers (ilmpq_hal_t), so the same code
 * runs on the board (Xil_In32/Xil_Out32, Xil_DCacheFlushRange, XTime_GetTime; see docs/board.md)
 * and on a host against the RTL (tests/test_c_driver.py runs it under Verilator).
 *
 * Return codes: ILMPQ_OK (0), ILMPQ_PENDING (1, ilmpq_poll only), a negative ILMPQ_ERR_* of the
 * driver, or ILMPQ_ERR_HW(code) = -256 - code for a hardware ErrorCode the accelerator latched
 * (ILMPQ_ERR_DMA_READ_SLVERR ... below; ERR_INFO is kept in the device). ilmpq_strerror()
 * names any of them.
 *
 * Typical use (a network that is one program per frame; slots from compiled.json "slots"):
 *
 *     ilmpq_dev_t dev;
 *     ilmpq_init(&dev, &hal);
 *     ilmpq_load_image(&dev, IMAGE_BASE, image_bin, image_size);
 *     ilmpq_set_arena(&dev, ARENA_BASE, ARENA_LIMIT);   (compiled.json "arena")
 *     rc = ilmpq_infer(&dev, &slot[0], input, input_bytes, logits, output_bytes, 1000000);
 *
 * input is the raw image as the application has it: its H*W*C uint8 bytes in HWC order (row by
 * row, pixel by pixel, the channels of a pixel together), when compiled.json "input_layout" is
 * "direct", "layout" or "raw" (the accelerator reads those bytes itself; the host prepares
 * nothing). Only with "host" (the compile report says why) must the application lay the input
 * out as the compiler's placement says.
 *
 * Frames back to back: ilmpq_infer_start(&dev, &slot[k % 2], input_k, ...), write input k + 1
 * into slot (k + 1) % 2 while frame k runs, ilmpq_infer_finish(&dev, &slot[k % 2], logits, ...),
 * start frame k + 1 at once and consume the logits of frame k while it runs.
 *
 * A batched program (ilmpq compile --batch B; compiled.json "batch" = B, each slot's "images"):
 * B images a run through an ilmpq_batch_slot_t (below),
 *
 *     rc = ilmpq_infer_batch_start(&dev, &bslot[k % 2], inputs, n, input_bytes);
 *     rc = ilmpq_infer_batch_finish(&dev, &bslot[k % 2], logits, n, output_bytes, 1000000);
 *
 * with inputs[b] / logits[b] image b's buffers (n <= B; fewer fill up the run), back to back
 * through the slots as above.
 *
 * Step by step (any compiled model):
 *
 *     ilmpq_dev_t dev;
 *     ilmpq_init(&dev, &hal);
 *     if ((rc = ilmpq_check(&dev)) != ILMPQ_OK) ... wrong bitstream
 *     ilmpq_load_image(&dev, IMAGE_BASE, image_bin, image_size);   (sets the DMA window)
 *     ilmpq_set_arena(&dev, ARENA_BASE, ARENA_LIMIT);   (write protection, compiled.json)
 *     ilmpq_write_input(&dev, INPUT_ADDR, INPUT_CHECK, INPUT_ROW_BYTES, pixels, input_bytes);
 *     for each accelerator step: ilmpq_set_prog_tag(&dev, prog_tag);
 *                                rc = ilmpq_run(&dev, prog_addr, n_instr, 1000000);
 *     ilmpq_mem_read(&dev, OUTPUT_ADDR, out, output_bytes);
 *     ilmpq_read_counters(&dev, &counters);
 *
 * Addresses, program addresses, lengths and tensor placements come from the compiler's
 * compiled.json ("base", "steps", "slots", "tensors").
 *
 * Layers on the host: the driver runs none (a "cpu" step of compiled.json is the application's
 * code). When an accelerated layer reads a host layer's output, compiled.json "host_checks"
 * names the tensor with its "check" address and "row_bytes": write the output with
 * ilmpq_write_input(&dev, TENSOR_ADDR, check, row_bytes, bytes, n), which writes its
 * activation check entries too (a tensor not in "host_checks" is written with check 0);
 * without them the accelerated read stops with ACT_CRC.
 */
#ifndef ILMPQ_DRIVER_H
#define ILMPQ_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "ilmpq_regs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- return codes ---- */

/* A hardware ErrorCode (ILMPQ_ERROR_CODE_*) as a return code. */
#define ILMPQ_ERR_HW_BASE (-256)
#define ILMPQ_ERR_HW(code) (ILMPQ_ERR_HW_BASE - (int)(code))

enum {
    ILMPQ_OK = 0,
    ILMPQ_PENDING = 1,            /* ilmpq_poll: the run is still going */
    ILMPQ_ERR_ARG = -1,           /* NULL pointer, zero length, misaligned or overflowing range */
    ILMPQ_ERR_NO_DEVICE = -2,     /* ID is not the ilmpq magic: wrong address or no bitstream */
    ILMPQ_ERR_VERSION = -3,       /* register map major version differs from ilmpq_regs.h */
    ILMPQ_ERR_CONFIG = -4,        /* CONFIG_ID or geometry differs: bitstream for another config */
    ILMPQ_ERR_BUSY = -5,          /* a run is in progress (STATUS.busy) */
    ILMPQ_ERR_IDLE = -6,          /* ilmpq_poll/ilmpq_wait without a started run */
    ILMPQ_ERR_TIMEOUT = -7,       /* the run did not end in time; the accelerator was soft-reset */
    ILMPQ_ERR_RESET = -8,         /* STATUS.busy stayed set after a soft reset */
    ILMPQ_ERR_MEM = -9,           /* the HAL cannot map the DMA memory range */
    ILMPQ_ERR_WINDOW = -10,       /* empty DMA window, or the program is outside it */
    ILMPQ_ERR_BUS_ABANDONED = -11, /* STATUS.bus_abandoned: reset the AXI interconnect, then
                                     ilmpq_clear_bus_abandoned (the hardware ignores START) */
    ILMPQ_ERR_UNSUPPORTED = -12,  /* the build lacks the feature (BUFFERS.mac = 0: no weight MAC) */
    /* STATUS.error with error_code NONE (never produced by a correct bitstream) */
    ILMPQ_ERR_HW_UNSPECIFIED = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_NONE),
    ILMPQ_ERR_DMA_READ_SLVERR = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_DMA_READ_SLVERR),
    ILMPQ_ERR_DMA_READ_DECERR = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_DMA_READ_DECERR),
    ILMPQ_ERR_DMA_WRITE_SLVERR = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_DMA_WRITE_SLVERR),
    ILMPQ_ERR_DMA_WRITE_DECERR = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_DMA_WRITE_DECERR),
    ILMPQ_ERR_DMA_READ_WINDOW = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_DMA_READ_WINDOW),
    ILMPQ_ERR_DMA_WRITE_WINDOW = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_DMA_WRITE_WINDOW),
    ILMPQ_ERR_DMA_ALIGN = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_DMA_ALIGN),
    ILMPQ_ERR_DMA_LENGTH = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_DMA_LENGTH),
    ILMPQ_ERR_WPKG_MAGIC = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_WPKG_MAGIC),
    ILMPQ_ERR_WPKG_SEQ = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_WPKG_SEQ),
    ILMPQ_ERR_WPKG_LENGTH = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_WPKG_LENGTH),
    ILMPQ_ERR_WPKG_CRC = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_WPKG_CRC),
    ILMPQ_ERR_INSTR_OPCODE = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_INSTR_OPCODE),
    ILMPQ_ERR_INSTR_FIELD = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_INSTR_FIELD),
    ILMPQ_ERR_PROGRAM_OVERRUN = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_PROGRAM_OVERRUN),
    ILMPQ_ERR_WATCHDOG = ILMPQ_ERR_HW(ILMPQ_ERROR_CODE_TIMEOUT)
};

/* Defaults of ilmpq_init (change the fields of ilmpq_dev_t afterwards). */
#define ILMPQ_DEFAULT_WATCHDOG_CYCLES 100000u  /* cycles without progress -> TIMEOUT */
#define ILMPQ_DEFAULT_POLL_US 10u              /* delay between STATUS polls */
#define ILMPQ_DEFAULT_RESET_TIMEOUT_US 10000u  /* soft reset: time to become idle */

/* ---- the hardware abstraction ---- */

/*
 * Every function gets ctx first. read32/write32 and mem_map are required; the others may be
 * NULL:
 *   read32(ctx, offset), write32(ctx, offset, value): one 32-bit access at a byte offset of the
 *     register window (bare metal: Xil_In32(BASE + offset)).
 *   mem_map(ctx, addr, size): a CPU pointer to the bus addresses [addr, addr + size) of DMA
 *     memory, or NULL if they are not mapped (bare metal, identity-mapped: (void *)addr).
 *   cache_clean(ctx, ptr, size): write dirty cache lines of the range back to memory before the
 *     accelerator reads it (Xil_DCacheFlushRange). NULL: memory is uncached or coherent.
 *   cache_invalidate(ctx, ptr, size): drop cached lines of the range before the CPU reads what
 *     the accelerator wrote (Xil_DCacheInvalidateRange). NULL: uncached or coherent.
 *   time_us(ctx): a monotonic microsecond clock for timeouts. NULL: each poll counts as poll_us.
 *   delay_us(ctx, us): wait between polls. NULL: poll back to back.
 */
typedef struct ilmpq_hal {
    void *ctx;
    uint32_t (*read32)(void *ctx, uint32_t offset);
    void (*write32)(void *ctx, uint32_t offset, uint32_t value);
    void *(*mem_map)(void *ctx, uint32_t addr, uint32_t size);
    void (*cache_clean)(void *ctx, const void *ptr, uint32_t size);
    void (*cache_invalidate)(void *ctx, void *ptr, uint32_t size);
    uint64_t (*time_us)(void *ctx);
    void (*delay_us)(void *ctx, uint32_t us);
} ilmpq_hal_t;

/* The identification registers as read (ilmpq_read_identity, ilmpq_check). */
typedef struct ilmpq_identity {
    uint32_t magic;      /* ID */
    uint32_t version;    /* VERSION: major [23:16], minor [15:8], patch [7:0] */
    uint32_t config_id;  /* CONFIG_ID */
    uint32_t geometry;   /* GEOMETRY */
    uint32_t datapath;   /* DATAPATH */
    uint32_t buffers;    /* BUFFERS */
} ilmpq_identity_t;

/* The performance counters of the last run (docs/registers.md). */
typedef struct ilmpq_counters {
    uint64_t cycles;         /* clock cycles while busy */
    uint64_t pe_busy;        /* cycles the PE array accepted an activation beat */
    uint64_t stall_weight;   /* PE array waited for a weight set */
    uint64_t stall_act;      /* PE array waited for activations */
    uint64_t stall_store;    /* PE array waited for an accumulator bank */
    uint64_t stall_dep;      /* a unit waited for a dependency token */
    uint64_t bytes_read;     /* AXI read data bytes */
    uint64_t bytes_written;  /* AXI write data bytes */
    uint64_t instructions;   /* instructions retired */
} ilmpq_counters_t;

/* One accelerator. Fields after hal may be changed between runs. */
typedef struct ilmpq_dev {
    ilmpq_hal_t hal;
    uint32_t win_base;          /* DMA window [win_base, win_limit), written at every start */
    uint32_t win_limit;
    uint32_t wr_base;           /* activation arena [wr_base, wr_limit) STOREs may write */
    uint32_t wr_limit;          /* (WR_BASE, WR_LIMIT), written at every start */
    uint32_t prog_tag;          /* PROG_TAG of the next program (compiled.json steps[k] /
                                   slots[k] "prog_tag"), written at every start */
    uint32_t watchdog_cycles;   /* WATCHDOG; 0 disables the hardware watchdog */
    uint32_t poll_us;           /* delay between polls (and the poll's weight without time_us) */
    uint32_t reset_timeout_us;  /* how long a soft reset may take */
    int irq_enable;             /* CTRL.irq_en at start (for an interrupt handler); default 1 */
    /* state, read-only for the application */
    int checked;                /* ilmpq_check passed */
    int running;                /* started and not yet seen done */
    uint32_t last_status;       /* STATUS at the end of the last run */
    uint32_t last_error_code;   /* ErrorCode of the last run (ILMPQ_ERROR_CODE_NONE if fine) */
    uint32_t last_err_info;     /* ERR_INFO of the last run */
    ilmpq_identity_t identity;  /* as read by ilmpq_check */
} ilmpq_dev_t;

/*
 * Initialise dev with a copy of *hal and the defaults; touches no register.
 * ILMPQ_ERR_ARG if dev or hal is NULL or read32/write32/mem_map is missing.
 */
int ilmpq_init(ilmpq_dev_t *dev, const ilmpq_hal_t *hal);

/* Read the six identification registers into *id. */
int ilmpq_read_identity(ilmpq_dev_t *dev, ilmpq_identity_t *id);

/*
 * Compare the identification registers with ilmpq_regs.h: ILMPQ_ERR_NO_DEVICE (ID),
 * ILMPQ_ERR_VERSION (major version), ILMPQ_ERR_CONFIG (CONFIG_ID, GEOMETRY, DATAPATH, BUFFERS);
 * ILMPQ_OK sets dev->checked. ilmpq_start calls it once if the application did not.
 */
int ilmpq_check(ilmpq_dev_t *dev);

/* Set the DMA window [base, limit) used by the next starts; ILMPQ_ERR_WINDOW if empty.
 * The activation arena becomes the whole window: narrow it with ilmpq_set_arena. */
int ilmpq_set_window(ilmpq_dev_t *dev, uint32_t base, uint32_t limit);

/*
 * Authenticated weight packages (docs/reliability.md): program the 16-byte SipHash-2-4 key into
 * the write-only MAC_KEY0..3 registers (key[0] is bits 7:0 of MAC_KEY0). The key survives a soft
 * reset and is cleared by a hard reset; it cannot be read back. ILMPQ_ERR_BUSY during a run.
 */
int ilmpq_set_mac_key(ilmpq_dev_t *dev, const uint8_t key[16]);

/*
 * Enable the tag check with the compiled model's 64-bit nonce (compiled.json "mac_nonce"), or
 * disable it (enable = 0: CRC-checked packages). ILMPQ_ERR_BUSY during a run;
 * ILMPQ_ERR_UNSUPPORTED (nothing written) for enable != 0 on a build without the MAC core
 * (BUFFERS.mac = 0 in ilmpq_regs.h, e.g. z020: HWConfig.weight_mac = 0).
 */
int ilmpq_set_mac(ilmpq_dev_t *dev, int enable, uint64_t nonce);

/* Set the activation arena [base, limit) the STOREs of the next starts may write (the
 * compiled model's "arena" in compiled.json): a STORE outside it stops the run with
 * WRITE_PROTECT before any beat, so a corrupted STORE cannot overwrite the program, weights
 * or lane parameters. ILMPQ_ERR_WINDOW unless win_base <= base <= limit <= win_limit. */
int ilmpq_set_arena(ilmpq_dev_t *dev, uint32_t base, uint32_t limit);

/* Set the PROG_TAG of the next starts (compiled.json "prog_tag" of the step): every
 * instruction's check word covers it, so a program from another compilation is refused at its
 * first instruction (ILMPQ_ERR_INSTR_CRC). ilmpq_infer_start sets it from the slot. */
int ilmpq_set_prog_tag(ilmpq_dev_t *dev, uint32_t tag);

/* Copy size bytes to bus address addr, then clean the cache over them (before the run). */
int ilmpq_mem_write(ilmpq_dev_t *dev, uint32_t addr, const void *src, uint32_t size);

/* Invalidate the cache over size bytes at bus address addr, then copy them to dst (after it). */
int ilmpq_mem_read(ilmpq_dev_t *dev, uint32_t addr, void *dst, uint32_t size);

/*
 * Write the compiled memory image (image.bin) to base and set the DMA window to exactly
 * [base, base + size), the compiler's window.
 */
int ilmpq_load_image(ilmpq_dev_t *dev, uint32_t base, const void *image, uint32_t size);

/*
 * Start the program of n_instr instructions at prog_addr (a multiple of ILMPQ_BEAT_BYTES inside
 * the window): check the hardware once, refuse if busy (ILMPQ_ERR_BUSY) or if
 * STATUS.bus_abandoned is set (ILMPQ_ERR_BUS_ABANDONED), write PROG_ADDR, PROG_LEN, WIN_BASE,
 * WIN_LIMIT, WATCHDOG, clear STATUS.done, then CTRL.start (with irq_en). Returns at once.
 */
int ilmpq_start(ilmpq_dev_t *dev, uint32_t prog_addr, uint32_t n_instr);

/*
 * One STATUS read: ILMPQ_PENDING while the run goes on; when it has ended, acknowledge
 * STATUS.done and return ILMPQ_OK or the run's ILMPQ_ERR_HW(code) (ERR_INFO in
 * dev->last_err_info).
 */
int ilmpq_poll(ilmpq_dev_t *dev);

/*
 * Poll until the run ends or timeout_us passes; on timeout, soft-reset and return
 * ILMPQ_ERR_TIMEOUT (ILMPQ_ERR_RESET if the accelerator does not become idle either).
 */
int ilmpq_wait(ilmpq_dev_t *dev, uint32_t timeout_us);

/* ilmpq_start, then ilmpq_wait. */
int ilmpq_run(ilmpq_dev_t *dev, uint32_t prog_addr, uint32_t n_instr, uint32_t timeout_us);

/*
 * Abort whatever runs: CTRL.soft_reset, wait up to reset_timeout_us for STATUS.busy to fall,
 * clear STATUS.done. ILMPQ_ERR_RESET if busy stays set.
 */
int ilmpq_soft_reset(ilmpq_dev_t *dev);

/*
 * Clear STATUS.bus_abandoned (set when an abort gave up on AXI transactions the subordinate
 * never finished, after BUS_TIMEOUT cycles). Call it only after resetting the AXI interconnect
 * between the accelerator and memory; until then ilmpq_start returns ILMPQ_ERR_BUS_ABANDONED.
 */
int ilmpq_clear_bus_abandoned(ilmpq_dev_t *dev);

/*
 * One frame slot of a network compiled as one program per frame (compiled.json "slots"): its
 * input tensor, its output tensor and its copy of the program.
 */
typedef struct ilmpq_frame_slot {
    uint32_t input_addr;   /* bus address of the input tensor (the raw HWC image) */
    uint32_t output_addr;  /* bus address of the output tensor (the logits) */
    uint32_t prog_addr;    /* the slot's program */
    uint32_t n_instr;
    uint32_t prog_tag;     /* its PROG_TAG */
    uint32_t input_check;  /* bus address of the input's activation check entries (0: none) */
    uint32_t input_row_bytes;  /* bytes of a stored input row (one check entry each) */
} ilmpq_frame_slot_t;

/*
 * Write input_bytes of input to input_addr and, when check_addr is not 0, the input's
 * activation check entries (compiled.json "input_check" / the slot's "input_check",
 * "input_row_bytes"; for a host layer's output its "host_checks" entry): per row of row_bytes bytes one beat at check_addr + row * beat, the sum
 * modulo 2^32 of CRC-32 (zlib's) over each beat's bus address (4 bytes, little-endian)
 * followed by its bytes; the accelerator checks every row it reads against them (ACT_CRC).
 * ILMPQ_ERR_ARG if input_bytes is not a whole number of rows of whole beats.
 */
int ilmpq_write_input(ilmpq_dev_t *dev, uint32_t input_addr, uint32_t check_addr,
                      uint32_t row_bytes, const void *input, uint32_t input_bytes);

/*
 * Write input_bytes of input (the input tensor's bytes: the raw HWC image, see the top) to the
 * slot's input and start the slot's program; returns at once (ilmpq_infer_finish ends the
 * frame).
 */
int ilmpq_infer_start(ilmpq_dev_t *dev, const ilmpq_frame_slot_t *slot, const void *input,
                      uint32_t input_bytes);

/*
 * Wait for the frame started on slot (ilmpq_wait) and read output_bytes of its output tensor
 * into output; the run's return code if it failed (output untouched).
 */
int ilmpq_infer_finish(ilmpq_dev_t *dev, const ilmpq_frame_slot_t *slot, void *output,
                       uint32_t output_bytes, uint32_t timeout_us);

/* The one-call inference: ilmpq_infer_start, then ilmpq_infer_finish. */
int ilmpq_infer(ilmpq_dev_t *dev, const ilmpq_frame_slot_t *slot, const void *input,
                uint32_t input_bytes, void *output, uint32_t output_bytes, uint32_t timeout_us);

/*
 * Batched programs (compiled.json "batch" = B > 1, ilmpq compile --batch B; docs/board.md,
 * *Batched programs*): one program runs B images, each with its own input, input check entries
 * and output in every frame slot, the weights of the weight-bound layers loaded once for the
 * B images. The batch-1 functions above are unchanged; these take any B >= 1 (a batch-1 slot is
 * a batched slot of one image: its input_addr, input_check and output_addr).
 */

/* One image of a batched frame slot (compiled.json slots[k].images[b]). */
typedef struct ilmpq_batch_image {
    uint32_t input_addr;   /* bus address of image b's input tensor (the raw HWC image) */
    uint32_t input_check;  /* bus address of its activation check entries (0: none) */
    uint32_t output_addr;  /* bus address of image b's output tensor (its logits) */
} ilmpq_batch_image_t;

/*
 * One frame slot of a batched program (compiled.json "slots"[k]): its program and its
 * n_images images. images points to n_images entries the application owns (a static array
 * filled from slots[k].images; the driver never allocates or keeps the pointer past a call).
 */
typedef struct ilmpq_batch_slot {
    uint32_t prog_addr;        /* the slot's program */
    uint32_t n_instr;
    uint32_t prog_tag;         /* its PROG_TAG */
    uint32_t input_row_bytes;  /* bytes of a stored input row (compiled.json "input_row_bytes") */
    uint32_t n_images;         /* images a run, B (compiled.json "batch"; 1 <= B) */
    const ilmpq_batch_image_t *images;  /* n_images entries, image 0 first */
} ilmpq_batch_slot_t;

/*
 * Write the inputs of one run of the batched slot and start its program; returns at once
 * (ilmpq_infer_batch_finish ends the run). inputs[b] (b < n_inputs) holds input_bytes bytes of
 * image b (the input tensor's bytes, as for ilmpq_infer_start); each goes to images[b] with its
 * check entries (ilmpq_write_input). A last group of fewer images (1 <= n_inputs < n_images):
 * inputs[n_inputs - 1] is written again into the remaining images, whose outputs the
 * application ignores (ilmpq_infer_batch_finish reads only the first n_outputs).
 * ILMPQ_ERR_ARG, with nothing written, if dev, slot, slot->images, inputs or any inputs[b] is
 * NULL, or n_inputs is 0 or more than slot->n_images; ILMPQ_ERR_BUSY during a run; the first
 * write's error otherwise (the program is then not started).
 */
int ilmpq_infer_batch_start(ilmpq_dev_t *dev, const ilmpq_batch_slot_t *slot,
                            const void *const inputs[], uint32_t n_inputs, uint32_t input_bytes);

/*
 * Wait for the run started on slot (ilmpq_wait) and read output_bytes of image b's output into
 * outputs[b] for b < n_outputs (the output tensor's stored bytes: compiled.json "output_bytes",
 * the same for every image). ILMPQ_ERR_ARG, before waiting, if dev, slot, slot->images, outputs
 * or any outputs[b] is NULL, or n_outputs is 0 or more than slot->n_images; the run's return
 * code if it failed (outputs untouched).
 */
int ilmpq_infer_batch_finish(ilmpq_dev_t *dev, const ilmpq_batch_slot_t *slot,
                             void *const outputs[], uint32_t n_outputs, uint32_t output_bytes,
                             uint32_t timeout_us);

/* Read every performance counter (LO, then HI, as the snapshot rule requires). */
int ilmpq_read_counters(ilmpq_dev_t *dev, ilmpq_counters_t *out);

/* Is rc a hardware error, and which ErrorCode (0 if not one)? */
int ilmpq_is_hw_error(int rc);
uint32_t ilmpq_hw_error_code(int rc);

/* A constant string naming any return code ("OK", "ILMPQ_ERR_CONFIG", "DMA_READ_SLVERR"...). */
const char *ilmpq_strerror(int rc);

#ifdef __cplusplus
}
#endif

#endif /* ILMPQ_DRIVER_H */
