// gen_test_xclbin.c - writes a metadata-only xclbin for the spk_acc kernel, for host tests
// under XRT's noop shim (no Vitis, no board), and prints the link.cfg connectivity that a
// real v++ link must use. Both come from SPK_ACC_ARGS in firmware/kernels/spk_acc.h, the one
// table that defines the kernel interface.
//
//   gen_test_xclbin OUT.xclbin [--kernel NAME]   write the xclbin (NAME only for tests that
//                                                want a kernel the host will not find)
//   gen_test_xclbin --xml                        print the EMBEDDED_METADATA XML
//   gen_test_xclbin --link-cfg                   print the [connectivity] lines of link.cfg
//
// Build: cc -std=c11 -Wall -Wextra -I/usr/include/xrt tools/xclbin/gen_test_xclbin.c
// (only the installed xclbin.h is used, for the section structs; no XRT library).
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xclbin.h>

#include "../../firmware/kernels/spk_acc.h"

typedef struct arg_row {
    int index;
    const char *name;
    int global;
    const char *bundle, *bank;
    unsigned offset;
    const char *type;
} arg_row;

static const arg_row k_args[SPK_ACC_NARGS] = {
#define X(i, n, k, b, m, o, t, w) {i, #n, k, b, m, o, t},
    SPK_ACC_ARGS(X)
#undef X
};

// Memory banks of the test topology (tags as on xilinx_vck190_base_202210_1).
static const char *const k_banks[] = {"DDR", "LPDDR"};
enum { N_BANKS = 2 };
static const uint64_t k_bank_base[N_BANKS] = {0x0ull, 0x50000000000ull};
static const uint64_t k_bank_kb[N_BANKS] = {2ull << 20, 8ull << 20};  // 2 GiB, 8 GiB in KiB
static const uint64_t k_cu_base = 0xA4010000ull;

static int bank_index(const char *tag) {
    for (int i = 0; i < N_BANKS; i++)
        if (strcmp(k_banks[i], tag) == 0) return i;
    return -1;
}

// Growable text buffer.
typedef struct sbuf { char *p; size_t n, cap; } sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { fprintf(stderr, "gen_test_xclbin: formatting failed\n"); exit(1); }
        if (b->p && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
        char *q = realloc(b->p, cap);
        if (!q) { fprintf(stderr, "gen_test_xclbin: out of memory\n"); exit(1); }
        b->p = q;
        b->cap = cap;
    }
}

static void build_xml(sbuf *x, const char *kname) {
    sb_printf(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    sb_printf(x, "<project name=\"spikerun_test\">\n");
    sb_printf(x, "  <platform vendor=\"xilinx\" boardid=\"vck190\" name=\"base\" featureRomTime=\"0\">\n");
    sb_printf(x, "    <version major=\"202210\" minor=\"1\"/>\n");
    sb_printf(x, "    <description/>\n");
    sb_printf(x, "    <board name=\"vck190\" vendor=\"xilinx\" fpga=\"xcvc1902\"/>\n");
    sb_printf(x, "    <device name=\"fpga0\" fpgaDevice=\"versal\" addrWidth=\"0\">\n");
    sb_printf(x, "      <core name=\"OCL_REGION_0\" target=\"hw\" type=\"clc_region\" clockFreq=\"0\" numComputeUnits=\"1\">\n");
    sb_printf(x, "        <kernel name=\"%s\" language=\"c\" vlnv=\"xilinx.com:hls:%s:1.0\" "
                 "preferredWorkGroupSizeMultiple=\"0\" workGroupSize=\"1\" interrupt=\"true\" "
                 "hwControlProtocol=\"ap_ctrl_hs\">\n", kname, kname);
    // one master port per distinct bundle, in table order
    for (int i = 0; i < SPK_ACC_NARGS; i++) {
        if (!k_args[i].global) continue;
        int seen = 0;
        for (int j = 0; j < i; j++)
            if (k_args[j].global && strcmp(k_args[j].bundle, k_args[i].bundle) == 0) seen = 1;
        if (seen) continue;
        char up[32];
        size_t n = strlen(k_args[i].bundle);
        for (size_t c = 0; c <= n && c < sizeof up; c++)
            up[c] = (char)((k_args[i].bundle[c] >= 'a' && k_args[i].bundle[c] <= 'z')
                               ? k_args[i].bundle[c] - 32 : k_args[i].bundle[c]);
        sb_printf(x, "          <port name=\"M_AXI_%s\" mode=\"master\" range=\"0xFFFFFFFF\" "
                     "dataWidth=\"512\" portType=\"addressable\" base=\"0x0\"/>\n", up);
    }
    sb_printf(x, "          <port name=\"S_AXI_CONTROL\" mode=\"slave\" range=\"0x%X\" "
                 "dataWidth=\"32\" portType=\"addressable\" base=\"0x0\"/>\n", SPK_ACC_CTRL_RANGE);
    for (int i = 0; i < SPK_ACC_NARGS; i++) {
        const arg_row *a = &k_args[i];
        char port[40];
        if (a->global) {
            snprintf(port, sizeof port, "M_AXI_%s", a->bundle);
            for (char *c = port; *c; c++)
                if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 32);
        } else {
            snprintf(port, sizeof port, "S_AXI_CONTROL");
        }
        sb_printf(x, "          <arg name=\"%s\" addressQualifier=\"%d\" id=\"%d\" port=\"%s\" "
                     "size=\"0x%X\" offset=\"0x%X\" hostOffset=\"0x0\" hostSize=\"0x%X\" "
                     "type=\"%s\"/>\n",
                  a->name, a->global ? 1 : 0, a->index, port, a->global ? 8u : 4u, a->offset,
                  a->global ? 8u : 4u, a->type);
    }
    sb_printf(x, "          <instance name=\"%s\">\n", SPK_ACC_CU_NAME);
    sb_printf(x, "            <addrRemap base=\"0x%llX\" range=\"0x%X\" port=\"S_AXI_CONTROL\"/>\n",
              (unsigned long long)k_cu_base, SPK_ACC_CTRL_RANGE);
    sb_printf(x, "          </instance>\n");
    sb_printf(x, "        </kernel>\n");
    sb_printf(x, "      </core>\n");
    sb_printf(x, "    </device>\n");
    sb_printf(x, "  </platform>\n");
    sb_printf(x, "</project>\n");
}

static void print_link_cfg(void) {
    printf("[connectivity]\n");
    printf("nk=%s:1:%s\n", SPK_ACC_KERNEL_NAME, SPK_ACC_CU_NAME);
    for (int i = 0; i < SPK_ACC_NARGS; i++)
        if (k_args[i].global) printf("sp=%s.%s:%s\n", SPK_ACC_CU_NAME, k_args[i].name, k_args[i].bank);
}

static int check_table(void) {
    for (int i = 0; i < SPK_ACC_NARGS; i++) {
        if (k_args[i].index != i) {
            fprintf(stderr, "gen_test_xclbin: argument table out of order at %d\n", i);
            return 1;
        }
        if (k_args[i].global && bank_index(k_args[i].bank) < 0) {
            fprintf(stderr, "gen_test_xclbin: argument '%s' names unknown bank '%s'\n",
                    k_args[i].name, k_args[i].bank);
            return 1;
        }
        // two args on one bundle must share the bank
        for (int j = 0; j < i; j++)
            if (k_args[i].global && k_args[j].global &&
                strcmp(k_args[i].bundle, k_args[j].bundle) == 0 &&
                strcmp(k_args[i].bank, k_args[j].bank) != 0) {
                fprintf(stderr, "gen_test_xclbin: bundle %s is on two banks\n", k_args[i].bundle);
                return 1;
            }
    }
    return 0;
}

static size_t align8(size_t v) { return (v + 7) & ~(size_t)7; }

static int write_xclbin(const char *path, const char *kname) {
    sbuf xml = {0};
    build_xml(&xml, kname);

    // MEM_TOPOLOGY
    size_t mem_sz = offsetof(struct mem_topology, m_mem_data) + N_BANKS * sizeof(struct mem_data);
    struct mem_topology *mem = calloc(1, mem_sz);
    // IP_LAYOUT
    size_t ip_sz = offsetof(struct ip_layout, m_ip_data) + sizeof(struct ip_data);
    struct ip_layout *ip = calloc(1, ip_sz);
    // CONNECTIVITY
    int n_conn = 0;
    for (int i = 0; i < SPK_ACC_NARGS; i++) n_conn += k_args[i].global;
    size_t conn_sz = offsetof(struct connectivity, m_connection) + (size_t)n_conn * sizeof(struct connection);
    struct connectivity *conn = calloc(1, conn_sz);
    if (!mem || !ip || !conn) { fprintf(stderr, "gen_test_xclbin: out of memory\n"); return 1; }

    mem->m_count = N_BANKS;
    for (int b = 0; b < N_BANKS; b++) {
        mem->m_mem_data[b].m_type = MEM_DDR4;
        mem->m_mem_data[b].m_used = 1;
        mem->m_mem_data[b].m_size = k_bank_kb[b];
        mem->m_mem_data[b].m_base_address = k_bank_base[b];
        snprintf((char *)mem->m_mem_data[b].m_tag, sizeof mem->m_mem_data[b].m_tag, "%s", k_banks[b]);
    }
    ip->m_count = 1;
    ip->m_ip_data[0].m_type = IP_KERNEL;
    ip->m_ip_data[0].properties = ((uint32_t)AP_CTRL_HS << IP_CONTROL_SHIFT) | IP_INT_ENABLE_MASK;
    ip->m_ip_data[0].m_base_address = k_cu_base;
    snprintf((char *)ip->m_ip_data[0].m_name, sizeof ip->m_ip_data[0].m_name, "%s:%s", kname,
             SPK_ACC_CU_NAME);
    conn->m_count = n_conn;
    for (int i = 0, c = 0; i < SPK_ACC_NARGS; i++) {
        if (!k_args[i].global) continue;
        conn->m_connection[c].arg_index = k_args[i].index;
        conn->m_connection[c].m_ip_layout_index = 0;
        conn->m_connection[c].mem_data_index = bank_index(k_args[i].bank);
        c++;
    }

    struct { uint32_t kind; const char *name; const void *data; size_t size; } sec[4] = {
        {EMBEDDED_METADATA, "metadata", xml.p, xml.n},
        {MEM_TOPOLOGY, "mem_topology", mem, mem_sz},
        {IP_LAYOUT, "ip_layout", ip, ip_sz},
        {CONNECTIVITY, "connectivity", conn, conn_sz},
    };
    const uint32_t n_sec = 4;
    size_t hdr = sizeof(struct axlf) + (n_sec - 1) * sizeof(struct axlf_section_header);
    size_t off[4], total = align8(hdr);
    for (uint32_t s = 0; s < n_sec; s++) {
        off[s] = total;
        total = align8(total + sec[s].size);
    }
    unsigned char *img = calloc(1, total);
    if (!img) { fprintf(stderr, "gen_test_xclbin: out of memory\n"); return 1; }
    struct axlf *top = (struct axlf *)img;
    memcpy(top->m_magic, "xclbin2", 8);
    top->m_signature_length = -1;
    memset(top->reserved, 0xFF, sizeof top->reserved);
    memset(top->m_keyBlock, 0xFF, sizeof top->m_keyBlock);
    top->m_uniqueId = 0x5350494b45525531ull;  // "SPIKERU1"
    top->m_header.m_length = total;
    top->m_header.m_timeStamp = 0;            // reproducible output
    top->m_header.m_versionMajor = 2;
    top->m_header.m_versionMinor = 13;
    top->m_header.m_mode = XCLBIN_HW_EMU;
    snprintf((char *)top->m_header.m_platformVBNV, sizeof top->m_header.m_platformVBNV,
             "xilinx_vck190_base_202210_1");
    static const unsigned char uuid[16] = {0x73, 0x70, 0x6b, 0x5f, 0x61, 0x63, 0x63, 0x5f,
                                           0x74, 0x65, 0x73, 0x74, 0x00, 0x00, 0x00, 0x01};
    memcpy(top->m_header.uuid, uuid, 16);
    top->m_header.m_numSections = n_sec;
    for (uint32_t s = 0; s < n_sec; s++) {
        struct axlf_section_header *h = &top->m_sections[s];
        h->m_sectionKind = sec[s].kind;
        snprintf(h->m_sectionName, sizeof h->m_sectionName, "%s", sec[s].name);
        h->m_sectionOffset = off[s];
        h->m_sectionSize = sec[s].size;
        memcpy(img + off[s], sec[s].data, sec[s].size);
    }

    // write to a temp file, then rename
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) {
        fprintf(stderr, "gen_test_xclbin: path too long\n");
        return 1;
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) { fprintf(stderr, "gen_test_xclbin: cannot create '%s': %s\n", tmp, strerror(errno)); return 1; }
    int ok = fwrite(img, 1, total, f) == total;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "gen_test_xclbin: cannot write '%s': %s\n", path, strerror(errno));
        remove(tmp);
        return 1;
    }
    free(img);
    free(conn);
    free(ip);
    free(mem);
    free(xml.p);
    return 0;
}

int main(int argc, char **argv) {
    if (check_table()) return 1;
    const char *out = NULL, *kname = SPK_ACC_KERNEL_NAME;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--xml") == 0) {
            sbuf x = {0};
            build_xml(&x, kname);
            fwrite(x.p, 1, x.n, stdout);
            free(x.p);
            return 0;
        } else if (strcmp(argv[i], "--link-cfg") == 0) {
            print_link_cfg();
            return 0;
        } else if (strcmp(argv[i], "--kernel") == 0 && i + 1 < argc) {
            kname = argv[++i];
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: gen_test_xclbin OUT.xclbin [--kernel NAME] | --xml | --link-cfg\n");
            return 64;
        } else {
            out = argv[i];
        }
    }
    if (!out) {
        fprintf(stderr, "usage: gen_test_xclbin OUT.xclbin [--kernel NAME] | --xml | --link-cfg\n");
        return 64;
    }
    return write_xclbin(out, kname);
}
