/*
 * ilmpq_driver.c -- bare-metal C99 driver of the ilmpq accelerator; see ilmpq_driver.h.
 *
 * Register names, offsets and field positions all come from ilmpq_regs.h (generated from the
 * register map), so this file never spells a bit position.
 */
#include "ilmpq_driver.h"

#include <string.h>

#define RD(dev, reg) ((dev)->hal.read32((dev)->hal.ctx, ILMPQ_##reg##_OFFSET))
#define WR(dev, reg, value) ((dev)->hal.write32((dev)->hal.ctx, ILMPQ_##reg##_OFFSET, (value)))

int ilmpq_init(ilmpq_dev_t *dev, const ilmpq_hal_t *hal)
{
    if (dev == NULL || hal == NULL || hal->read32 == NULL || hal->write32 == NULL
        || hal->mem_map == NULL)
        return ILMPQ_ERR_ARG;
    memset(dev, 0, sizeof *dev);
    dev->hal = *hal;
    dev->watchdog_cycles = ILMPQ_DEFAULT_WATCHDOG_CYCLES;
    dev->poll_us = ILMPQ_DEFAULT_POLL_US;
    dev->reset_timeout_us = ILMPQ_DEFAULT_RESET_TIMEOUT_US;
    dev->irq_enable = 1;
    dev->last_error_code = ILMPQ_ERROR_CODE_NONE;
    return ILMPQ_OK;
}

int ilmpq_read_identity(ilmpq_dev_t *dev, ilmpq_identity_t *id)
{
    if (dev == NULL || id == NULL)
        return ILMPQ_ERR_ARG;
    id->magic = RD(dev, ID);
    id->version = RD(dev, VERSION);
    id->config_id = RD(dev, CONFIG_ID);
    id->geometry = RD(dev, GEOMETRY);
    id->datapath = RD(dev, DATAPATH);
    id->buffers = RD(dev, BUFFERS);
    return ILMPQ_OK;
}

int ilmpq_check(ilmpq_dev_t *dev)
{
    ilmpq_identity_t id;
    int rc = ilmpq_read_identity(dev, &id);
    if (rc != ILMPQ_OK)
        return rc;
    dev->identity = id;
    dev->checked = 0;
    if (id.magic != ILMPQ_ID_RESET)
        return ILMPQ_ERR_NO_DEVICE;
    if (ilmpq_version_major_get(id.version) != ILMPQ_VERSION_MAJOR_RESET)
        return ILMPQ_ERR_VERSION;
    if (id.config_id != ILMPQ_CONFIG_ID_RESET || id.geometry != ILMPQ_GEOMETRY_RESET
        || id.datapath != ILMPQ_DATAPATH_RESET || id.buffers != ILMPQ_BUFFERS_RESET)
        return ILMPQ_ERR_CONFIG;
    dev->checked = 1;
    return ILMPQ_OK;
}

int ilmpq_set_window(ilmpq_dev_t *dev, uint32_t base, uint32_t limit)
{
    if (dev == NULL)
        return ILMPQ_ERR_ARG;
    if (limit <= base)
        return ILMPQ_ERR_WINDOW;
    dev->win_base = base;
    dev->win_limit = limit;
    dev->wr_base = base;
    dev->wr_limit = limit;
    return ILMPQ_OK;
}

int ilmpq_set_prog_tag(ilmpq_dev_t *dev, uint32_t tag)
{
    if (dev == NULL)
        return ILMPQ_ERR_ARG;
    dev->prog_tag = tag;
    return ILMPQ_OK;
}

int ilmpq_set_arena(ilmpq_dev_t *dev, uint32_t base, uint32_t limit)
{
    if (dev == NULL)
        return ILMPQ_ERR_ARG;
    if (base < dev->win_base || limit < base || limit > dev->win_limit)
        return ILMPQ_ERR_WINDOW;
    dev->wr_base = base;
    dev->wr_limit = limit;
    return ILMPQ_OK;
}

int ilmpq_set_mac_key(ilmpq_dev_t *dev, const uint8_t key[16])
{
    uint32_t w[4];
    unsigned i;
    if (dev == NULL || key == NULL)
        return ILMPQ_ERR_ARG;
    if (ilmpq_status_busy_get(RD(dev, STATUS)) != 0u)
        return ILMPQ_ERR_BUSY;
    for (i = 0; i < 4u; i++)
        w[i] = (uint32_t)key[4u * i] | ((uint32_t)key[4u * i + 1u] << 8)
               | ((uint32_t)key[4u * i + 2u] << 16) | ((uint32_t)key[4u * i + 3u] << 24);
    WR(dev, MAC_KEY0, ilmpq_mac_key0_key_set(0u, w[0]));
    WR(dev, MAC_KEY1, ilmpq_mac_key1_key_set(0u, w[1]));
    WR(dev, MAC_KEY2, ilmpq_mac_key2_key_set(0u, w[2]));
    WR(dev, MAC_KEY3, ilmpq_mac_key3_key_set(0u, w[3]));
    return ILMPQ_OK;
}

int ilmpq_set_mac(ilmpq_dev_t *dev, int enable, uint64_t nonce)
{
    if (dev == NULL)
        return ILMPQ_ERR_ARG;
    if (enable && ilmpq_buffers_mac_get(ILMPQ_BUFFERS_RESET) == 0u)
        return ILMPQ_ERR_UNSUPPORTED;  /* no SipHash core: every package would fail closed */
    if (ilmpq_status_busy_get(RD(dev, STATUS)) != 0u)
        return ILMPQ_ERR_BUSY;
    if (enable) {
        WR(dev, MAC_NONCE_LO, ilmpq_mac_nonce_lo_nonce_set(0u, (uint32_t)nonce));
        WR(dev, MAC_NONCE_HI, ilmpq_mac_nonce_hi_nonce_set(0u, (uint32_t)(nonce >> 32)));
    }
    WR(dev, MAC_CTRL, ilmpq_mac_ctrl_enable_set(0u, enable ? 1u : 0u));
    return ILMPQ_OK;
}

/* A CPU pointer to [addr, addr + size), or NULL with *rc set. */
static void *map_range(ilmpq_dev_t *dev, uint32_t addr, uint32_t size, const void *buf,
                       int *rc)
{
    void *p;
    *rc = ILMPQ_ERR_ARG;
    if (dev == NULL || buf == NULL || size == 0u || addr > UINT32_MAX - (size - 1u))
        return NULL;
    p = dev->hal.mem_map(dev->hal.ctx, addr, size);
    *rc = p != NULL ? ILMPQ_OK : ILMPQ_ERR_MEM;
    return p;
}

int ilmpq_mem_write(ilmpq_dev_t *dev, uint32_t addr, const void *src, uint32_t size)
{
    int rc;
    void *p = map_range(dev, addr, size, src, &rc);
    if (p == NULL)
        return rc;
    memcpy(p, src, size);
    if (dev->hal.cache_clean != NULL)
        dev->hal.cache_clean(dev->hal.ctx, p, size);
    return ILMPQ_OK;
}

int ilmpq_mem_read(ilmpq_dev_t *dev, uint32_t addr, void *dst, uint32_t size)
{
    int rc;
    void *p = map_range(dev, addr, size, dst, &rc);
    if (p == NULL)
        return rc;
    if (dev->hal.cache_invalidate != NULL)
        dev->hal.cache_invalidate(dev->hal.ctx, p, size);
    memcpy(dst, p, size);
    return ILMPQ_OK;
}

int ilmpq_load_image(ilmpq_dev_t *dev, uint32_t base, const void *image, uint32_t size)
{
    int rc = ilmpq_mem_write(dev, base, image, size);
    if (rc != ILMPQ_OK)
        return rc;
    if (base + (size - 1u) == UINT32_MAX)   /* the window limit would not fit 32 bits */
        return ILMPQ_ERR_WINDOW;
    return ilmpq_set_window(dev, base, base + size);
}

int ilmpq_start(ilmpq_dev_t *dev, uint32_t prog_addr, uint32_t n_instr)
{
    uint32_t ctrl, status;
    int rc;
    if (dev == NULL || n_instr == 0u || prog_addr % ILMPQ_BEAT_BYTES != 0u)
        return ILMPQ_ERR_ARG;
    if (!dev->checked && (rc = ilmpq_check(dev)) != ILMPQ_OK)
        return rc;
    if (dev->win_limit <= dev->win_base || prog_addr < dev->win_base
        || prog_addr >= dev->win_limit)
        return ILMPQ_ERR_WINDOW;
    status = RD(dev, STATUS);
    if (ilmpq_status_busy_get(status) != 0u)
        return ILMPQ_ERR_BUSY;
    if (ilmpq_status_bus_abandoned_get(status) != 0u)
        return ILMPQ_ERR_BUS_ABANDONED;
    WR(dev, PROG_ADDR, ilmpq_prog_addr_addr_set(0u, prog_addr));
    WR(dev, PROG_LEN, ilmpq_prog_len_len_set(0u, n_instr));
    WR(dev, WIN_BASE, ilmpq_win_base_addr_set(0u, dev->win_base));
    WR(dev, WIN_LIMIT, ilmpq_win_limit_addr_set(0u, dev->win_limit));
    WR(dev, WR_BASE, ilmpq_wr_base_addr_set(0u, dev->wr_base));
    WR(dev, WR_LIMIT, ilmpq_wr_limit_addr_set(0u, dev->wr_limit));
    WR(dev, PROG_TAG, ilmpq_prog_tag_tag_set(0u, dev->prog_tag));
    WR(dev, WATCHDOG, ilmpq_watchdog_cycles_set(0u, dev->watchdog_cycles));
    WR(dev, STATUS, ilmpq_status_done_set(0u, 1u));   /* clear a stale done (W1C) */
    ctrl = ilmpq_ctrl_start_set(0u, 1u);
    ctrl = ilmpq_ctrl_irq_en_set(ctrl, dev->irq_enable ? 1u : 0u);
    WR(dev, CTRL, ctrl);
    dev->running = 1;
    dev->last_error_code = ILMPQ_ERROR_CODE_NONE;
    dev->last_err_info = 0u;
    return ILMPQ_OK;
}

int ilmpq_poll(ilmpq_dev_t *dev)
{
    uint32_t status, code;
    if (dev == NULL)
        return ILMPQ_ERR_ARG;
    if (!dev->running)
        return ILMPQ_ERR_IDLE;
    status = RD(dev, STATUS);
    if (ilmpq_status_done_get(status) == 0u)
        return ILMPQ_PENDING;
    dev->running = 0;
    dev->last_status = status;
    WR(dev, STATUS, ilmpq_status_done_set(0u, 1u));   /* acknowledge (and the interrupt) */
    if (ilmpq_status_error_get(status) == 0u)
        return ILMPQ_OK;
    code = ilmpq_status_error_code_get(status);
    dev->last_error_code = code;
    dev->last_err_info = ilmpq_err_info_info_get(RD(dev, ERR_INFO));
    return ILMPQ_ERR_HW(code);
}

/* Wait until cond(dev) holds or timeout_us passes; 1 if it held. */
static int wait_until(ilmpq_dev_t *dev, uint32_t timeout_us, int (*cond)(ilmpq_dev_t *, int *),
                      int *rc)
{
    const ilmpq_hal_t *hal = &dev->hal;
    uint64_t start = hal->time_us != NULL ? hal->time_us(hal->ctx) : 0u;
    uint64_t elapsed = 0u;
    for (;;) {
        if (cond(dev, rc))
            return 1;
        if (hal->time_us != NULL)
            elapsed = hal->time_us(hal->ctx) - start;
        if (elapsed >= timeout_us)
            return cond(dev, rc);   /* one last look: it may have ended meanwhile */
        if (hal->delay_us != NULL && dev->poll_us != 0u)
            hal->delay_us(hal->ctx, dev->poll_us);
        if (hal->time_us == NULL)
            elapsed += dev->poll_us != 0u ? dev->poll_us : 1u;
    }
}

static int idle(ilmpq_dev_t *dev, int *rc)
{
    (void)rc;
    return ilmpq_status_busy_get(RD(dev, STATUS)) == 0u;
}

int ilmpq_soft_reset(ilmpq_dev_t *dev)
{
    uint32_t ctrl;
    int rc = ILMPQ_OK;
    if (dev == NULL)
        return ILMPQ_ERR_ARG;
    ctrl = ilmpq_ctrl_soft_reset_set(0u, 1u);
    ctrl = ilmpq_ctrl_irq_en_set(ctrl, dev->irq_enable ? 1u : 0u);
    WR(dev, CTRL, ctrl);
    dev->running = 0;
    if (!wait_until(dev, dev->reset_timeout_us, idle, &rc))
        return ILMPQ_ERR_RESET;
    WR(dev, STATUS, ilmpq_status_done_set(0u, 1u));
    return ILMPQ_OK;
}

int ilmpq_clear_bus_abandoned(ilmpq_dev_t *dev)
{
    if (dev == NULL)
        return ILMPQ_ERR_ARG;
    WR(dev, STATUS, ilmpq_status_bus_abandoned_set(0u, 1u));
    return ILMPQ_OK;
}

static int ended(ilmpq_dev_t *dev, int *rc)
{
    *rc = ilmpq_poll(dev);
    return *rc != ILMPQ_PENDING;
}

int ilmpq_wait(ilmpq_dev_t *dev, uint32_t timeout_us)
{
    int rc = ILMPQ_PENDING;
    if (dev == NULL)
        return ILMPQ_ERR_ARG;
    if (!dev->running)
        return ILMPQ_ERR_IDLE;
    if (wait_until(dev, timeout_us, ended, &rc))
        return rc;
    rc = ilmpq_soft_reset(dev);
    return rc == ILMPQ_OK ? ILMPQ_ERR_TIMEOUT : rc;
}

int ilmpq_run(ilmpq_dev_t *dev, uint32_t prog_addr, uint32_t n_instr, uint32_t timeout_us)
{
    int rc = ilmpq_start(dev, prog_addr, n_instr);
    return rc != ILMPQ_OK ? rc : ilmpq_wait(dev, timeout_us);
}

/* CRC-32 (zlib's: reflected 0x04C11DB7, init and final XOR 0xFFFFFFFF), four bits a step */
static uint32_t crc32_bytes(uint32_t crc, const uint8_t *p, uint32_t n)
{
    static const uint32_t nibble[16] = {
        0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u,
        0x4db26158u, 0x5005713cu, 0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu,
        0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu};
    uint32_t i;
    for (i = 0; i < n; i++) {
        crc ^= p[i];
        crc = (crc >> 4) ^ nibble[crc & 15u];
        crc = (crc >> 4) ^ nibble[crc & 15u];
    }
    return crc;
}

int ilmpq_write_input(ilmpq_dev_t *dev, uint32_t input_addr, uint32_t check_addr,
                      uint32_t row_bytes, const void *input, uint32_t input_bytes)
{
    const uint8_t *in = (const uint8_t *)input;
    uint8_t entry[ILMPQ_BEAT_BYTES];
    uint32_t r, b, k;
    int rc;
    if (dev == NULL || (input == NULL && input_bytes != 0))
        return ILMPQ_ERR_ARG;
    if (check_addr != 0u && (row_bytes == 0u || row_bytes % ILMPQ_BEAT_BYTES != 0u ||
                             input_bytes % row_bytes != 0u))
        return ILMPQ_ERR_ARG;
    rc = ilmpq_mem_write(dev, input_addr, input, input_bytes);
    if (rc != ILMPQ_OK || check_addr == 0u)
        return rc;
    for (r = 0; r < input_bytes / row_bytes; r++) {
        uint32_t sum = 0;
        for (b = 0; b < row_bytes; b += ILMPQ_BEAT_BYTES) {
            uint32_t a = input_addr + r * row_bytes + b;
            uint8_t le[4];
            uint32_t crc;
            le[0] = (uint8_t)a;
            le[1] = (uint8_t)(a >> 8);
            le[2] = (uint8_t)(a >> 16);
            le[3] = (uint8_t)(a >> 24);
            crc = crc32_bytes(0xffffffffu, le, 4u);
            crc = crc32_bytes(crc, in + r * row_bytes + b, ILMPQ_BEAT_BYTES);
            sum += crc ^ 0xffffffffu;
        }
        for (k = 0; k < ILMPQ_BEAT_BYTES; k++)
            entry[k] = k < 4u ? (uint8_t)(sum >> (8u * k)) : 0u;
        rc = ilmpq_mem_write(dev, check_addr + r * ILMPQ_BEAT_BYTES, entry, ILMPQ_BEAT_BYTES);
        if (rc != ILMPQ_OK)
            return rc;
    }
    return ILMPQ_OK;
}

int ilmpq_infer_start(ilmpq_dev_t *dev, const ilmpq_frame_slot_t *slot, const void *input,
                      uint32_t input_bytes)
{
    int rc;
    if (dev == NULL || slot == NULL)
        return ILMPQ_ERR_ARG;
    if (dev->running)
        return ILMPQ_ERR_BUSY;
    rc = ilmpq_write_input(dev, slot->input_addr, slot->input_check, slot->input_row_bytes,
                           input, input_bytes);
    if (rc != ILMPQ_OK)
        return rc;
    dev->prog_tag = slot->prog_tag;
    return ilmpq_start(dev, slot->prog_addr, slot->n_instr);
}

int ilmpq_infer_finish(ilmpq_dev_t *dev, const ilmpq_frame_slot_t *slot, void *output,
                       uint32_t output_bytes, uint32_t timeout_us)
{
    int rc;
    if (dev == NULL || slot == NULL)
        return ILMPQ_ERR_ARG;
    rc = ilmpq_wait(dev, timeout_us);
    return rc != ILMPQ_OK ? rc : ilmpq_mem_read(dev, slot->output_addr, output, output_bytes);
}

int ilmpq_infer(ilmpq_dev_t *dev, const ilmpq_frame_slot_t *slot, const void *input,
                uint32_t input_bytes, void *output, uint32_t output_bytes, uint32_t timeout_us)
{
    int rc = ilmpq_infer_start(dev, slot, input, input_bytes);
    return rc != ILMPQ_OK ? rc : ilmpq_infer_finish(dev, slot, output, output_bytes, timeout_us);
}

int ilmpq_infer_batch_start(ilmpq_dev_t *dev, const ilmpq_batch_slot_t *slot,
                            const void *const inputs[], uint32_t n_inputs, uint32_t input_bytes)
{
    uint32_t b;
    int rc;
    if (dev == NULL || slot == NULL || slot->images == NULL || inputs == NULL ||
        n_inputs == 0u || n_inputs > slot->n_images)
        return ILMPQ_ERR_ARG;
    for (b = 0; b < n_inputs; b++)
        if (inputs[b] == NULL)
            return ILMPQ_ERR_ARG;
    if (dev->running)
        return ILMPQ_ERR_BUSY;
    for (b = 0; b < slot->n_images; b++) {
        const ilmpq_batch_image_t *im = &slot->images[b];
        rc = ilmpq_write_input(dev, im->input_addr, im->input_check, slot->input_row_bytes,
                               inputs[b < n_inputs ? b : n_inputs - 1u], input_bytes);
        if (rc != ILMPQ_OK)
            return rc;
    }
    dev->prog_tag = slot->prog_tag;
    return ilmpq_start(dev, slot->prog_addr, slot->n_instr);
}

int ilmpq_infer_batch_finish(ilmpq_dev_t *dev, const ilmpq_batch_slot_t *slot,
                             void *const outputs[], uint32_t n_outputs, uint32_t output_bytes,
                             uint32_t timeout_us)
{
    uint32_t b;
    int rc;
    if (dev == NULL || slot == NULL || slot->images == NULL || outputs == NULL ||
        n_outputs == 0u || n_outputs > slot->n_images)
        return ILMPQ_ERR_ARG;
    for (b = 0; b < n_outputs; b++)
        if (outputs[b] == NULL)
            return ILMPQ_ERR_ARG;
    rc = ilmpq_wait(dev, timeout_us);
    for (b = 0; rc == ILMPQ_OK && b < n_outputs; b++)
        rc = ilmpq_mem_read(dev, slot->images[b].output_addr, outputs[b], output_bytes);
    return rc;
}

static uint64_t counter(ilmpq_dev_t *dev, uint32_t lo_offset)
{
    uint32_t lo = dev->hal.read32(dev->hal.ctx, lo_offset);   /* snapshots HI */
    uint32_t hi = dev->hal.read32(dev->hal.ctx, lo_offset + 4u);
    return ((uint64_t)hi << 32) | lo;
}

int ilmpq_read_counters(ilmpq_dev_t *dev, ilmpq_counters_t *out)
{
    if (dev == NULL || out == NULL)
        return ILMPQ_ERR_ARG;
    out->cycles = counter(dev, ILMPQ_CYCLES_LO_OFFSET);
    out->pe_busy = counter(dev, ILMPQ_PE_BUSY_LO_OFFSET);
    out->stall_weight = counter(dev, ILMPQ_STALL_WEIGHT_LO_OFFSET);
    out->stall_act = counter(dev, ILMPQ_STALL_ACT_LO_OFFSET);
    out->stall_store = counter(dev, ILMPQ_STALL_STORE_LO_OFFSET);
    out->stall_dep = counter(dev, ILMPQ_STALL_DEP_LO_OFFSET);
    out->bytes_read = counter(dev, ILMPQ_BYTES_READ_LO_OFFSET);
    out->bytes_written = counter(dev, ILMPQ_BYTES_WRITTEN_LO_OFFSET);
    out->instructions = counter(dev, ILMPQ_INSTRUCTIONS_LO_OFFSET);
    return ILMPQ_OK;
}

int ilmpq_is_hw_error(int rc)
{
    return rc <= ILMPQ_ERR_HW_BASE && rc > ILMPQ_ERR_HW_BASE - 256;
}

uint32_t ilmpq_hw_error_code(int rc)
{
    return ilmpq_is_hw_error(rc) ? (uint32_t)(ILMPQ_ERR_HW_BASE - rc) : 0u;
}

const char *ilmpq_strerror(int rc)
{
    switch (rc) {
    case ILMPQ_OK: return "OK";
    case ILMPQ_PENDING: return "ILMPQ_PENDING (the run is still going)";
    case ILMPQ_ERR_ARG: return "ILMPQ_ERR_ARG (NULL pointer, zero length or bad range)";
    case ILMPQ_ERR_NO_DEVICE: return "ILMPQ_ERR_NO_DEVICE (no ilmpq ID at the register base)";
    case ILMPQ_ERR_VERSION: return "ILMPQ_ERR_VERSION (register map version differs)";
    case ILMPQ_ERR_CONFIG: return "ILMPQ_ERR_CONFIG (bitstream built for another configuration)";
    case ILMPQ_ERR_BUSY: return "ILMPQ_ERR_BUSY (a run is in progress)";
    case ILMPQ_ERR_IDLE: return "ILMPQ_ERR_IDLE (no run was started)";
    case ILMPQ_ERR_TIMEOUT: return "ILMPQ_ERR_TIMEOUT (run did not end; soft reset done)";
    case ILMPQ_ERR_RESET: return "ILMPQ_ERR_RESET (still busy after a soft reset)";
    case ILMPQ_ERR_MEM: return "ILMPQ_ERR_MEM (DMA memory range not mapped by the HAL)";
    case ILMPQ_ERR_WINDOW: return "ILMPQ_ERR_WINDOW (empty DMA window or program outside it)";
    case ILMPQ_ERR_BUS_ABANDONED:
        return "ILMPQ_ERR_BUS_ABANDONED (reset the AXI interconnect, then clear STATUS.bus_abandoned)";
    case ILMPQ_ERR_UNSUPPORTED: return "ILMPQ_ERR_UNSUPPORTED (not in this build: no weight MAC core)";
    case ILMPQ_ERR_HW_UNSPECIFIED: return "STATUS.error set without an error code";
    default: break;
    }
    if (ilmpq_is_hw_error(rc))
        return ilmpq_error_code_name(ilmpq_hw_error_code(rc));
    return "unknown return code";
}
