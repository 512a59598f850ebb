/* gfill: the second Gearman load tool, for the workloads gload cannot drive.
 *
 * gload (benchmarks/gload.c) covers sync, background and coalescing throughput with one
 * function.  The scale questions of issue 5 need three more shapes, all on raw sockets in
 * one epoll loop so that the tool is never the bottleneck:
 *
 *   gfill fill  HOST PORT [opts]  clients submit -j background jobs with DISTINCT unique
 *                                 keys to -f FUNC and no worker takes them: measures how
 *                                 fast the server accepts (and indexes) a large queue.
 *                                 Latency is submit -> JOB_CREATED.
 *   gfill drain HOST PORT [opts]  -w workers register -f FUNC and complete -j jobs that are
 *                                 already queued: the drain rate of a deep queue.
 *   gfill funcs HOST PORT [opts]  -w workers each send CAN_DO for -F functions (gearmand
 *                                 issue #393), then clients run sync jobs spread round-robin
 *                                 over those functions.  Also prints register_secs, the
 *                                 time until every worker's CAN_DOs were processed (an
 *                                 ECHO_REQ sent after them has come back).
 *   gfill bgu   HOST PORT [opts]  background jobs with distinct unique keys, completed by
 *                                 workers: the durable-store workload (stores key on unique).
 *
 *   options: -j JOBS -c CLIENTS -w WORKERS -d DEPTH -s PAYLOAD -f FUNC -F NFUNCS
 *            -k KEYPREFIX -t TIMEOUT_S
 *
 * Latency of sync jobs is matched by job handle (JOB_CREATED arrives in submit order on a
 * connection; WORK_COMPLETE may not when several workers run a client's jobs).  Background
 * latency is submit -> JOB_CREATED.
 *
 * Prints one line:  mode=... jobs=... secs=... jobs_per_s=... p50_us=... p99_us=... [register_secs=...]
 * Exits 1 on a protocol error, a server ERROR, or when the run exceeds the timeout
 * (default 120 s), so no run can hang a benchmark.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CAN_DO = 1, PRE_SLEEP = 4, NOOP = 6, SUBMIT_JOB = 7, JOB_CREATED = 8, GRAB_JOB = 9,
       NO_JOB = 10, JOB_ASSIGN = 11, WORK_COMPLETE = 13, WORK_FAIL = 14, ECHO_REQ = 16,
       ECHO_RES = 17, SUBMIT_JOB_BG = 18, ERROR = 19, WORK_EXCEPTION = 25 };

enum { M_FILL, M_DRAIN, M_FUNCS, M_BGU };

#define MAX_HANDLE 64

typedef struct {                 /* one outstanding submit on a client connection */
    double sent_at;
    long seq;                    /* submit order on this connection */
    char handle[MAX_HANDLE];
    uint32_t hlen;               /* 0 until JOB_CREATED names it */
    int live;
} slot_t;

typedef struct {
    int fd, is_worker, echoed;
    char *in; size_t in_len, in_cap;
    char *out; size_t out_len, out_cap, out_off;
    long submitted, outstanding;
    slot_t *slots;               /* depth slots; a free one has live == 0 */
} conn_t;

static int mode, depth = 16, nfuncs = 1, nclients = 8, nworkers = 4;
static long total_jobs = 100000, per_client, done_jobs, submitted_total;
static size_t payload_len = 64;
static char *payload;
static const char *func = "gfill_echo", *keyprefix = "k";
static double timeout_s = 120;
static double *lat; static long lat_n;
static int ep, echoes_pending;

static double now(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *m) { fprintf(stderr, "gfill: %s\n", m); exit(1); }

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) die("out of memory");
    return q;
}

static void put_packet(conn_t *c, uint32_t type, const char **args, const size_t *lens, int nargs) {
    size_t size = 0;
    for (int i = 0; i < nargs; i++) size += lens[i] + (i < nargs - 1 ? 1 : 0);
    if (c->out_len + 12 + size > c->out_cap) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off; c->out_off = 0;
        }
        while (c->out_len + 12 + size > c->out_cap) c->out_cap = c->out_cap ? c->out_cap * 2 : 65536;
        c->out = xrealloc(c->out, c->out_cap);
    }
    char *p = c->out + c->out_len;
    uint32_t t = htonl(type), s = htonl((uint32_t)size);
    memcpy(p, "\0REQ", 4); memcpy(p + 4, &t, 4); memcpy(p + 8, &s, 4); p += 12;
    for (int i = 0; i < nargs; i++) {
        memcpy(p, args[i], lens[i]); p += lens[i];
        if (i < nargs - 1) *p++ = 0;
    }
    c->out_len += 12 + size;
}

static void flush(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) { if (errno == EAGAIN) break; die("write failed"); }
        c->out_off += n;
    }
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    struct epoll_event ev = { .events = EPOLLIN | (c->out_len ? EPOLLOUT : 0), .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void func_name(long i, char *buf, size_t *len) {
    if (nfuncs <= 1) { *len = strlen(func); memcpy(buf, func, *len); return; }
    *len = (size_t)snprintf(buf, 128, "%s_%ld", func, i % nfuncs);
}

static void submit(conn_t *c) {
    char fn[128], uniq[64]; size_t flen, ulen = 0;
    func_name(submitted_total, fn, &flen);
    if (mode == M_FILL || mode == M_BGU)
        ulen = (size_t)snprintf(uniq, sizeof uniq, "%s%ld", keyprefix, submitted_total);
    const char *a[3] = { fn, uniq, payload }; size_t l[3] = { flen, ulen, payload_len };
    put_packet(c, mode == M_FUNCS ? SUBMIT_JOB : SUBMIT_JOB_BG, a, l, 3);
    slot_t *s = c->slots;
    while (s->live) s++;                 /* outstanding < depth, so a free slot exists */
    s->sent_at = now(); s->seq = c->submitted; s->hlen = 0; s->live = 1;
    c->submitted++; c->outstanding++; submitted_total++;
}

static void top_up(conn_t *c) {
    while (c->outstanding < depth && c->submitted < per_client) submit(c);
}

static void record(double t0) { lat[lat_n++] = now() - t0; }

static slot_t *oldest_unnamed(conn_t *c) {  /* JOB_CREATED answers submits in order */
    slot_t *best = NULL;
    for (int i = 0; i < depth; i++) {
        slot_t *s = &c->slots[i];
        if (s->live && !s->hlen && (!best || s->seq < best->seq)) best = s;
    }
    if (!best) die("JOB_CREATED with no submit outstanding");
    return best;
}

static void retire_oldest(conn_t *c) {   /* background: JOB_CREATED ends the submit */
    slot_t *s = oldest_unnamed(c);
    record(s->sent_at); s->live = 0; c->outstanding--;
}

static void on_worker_packet(conn_t *c, uint32_t type, char *data, uint32_t size) {
    if (type == NOOP) { put_packet(c, GRAB_JOB, NULL, NULL, 0); }
    else if (type == NO_JOB) { put_packet(c, PRE_SLEEP, NULL, NULL, 0); }
    else if (type == ECHO_RES) { c->echoed = 1; echoes_pending--; }
    else if (type == JOB_ASSIGN) {
        char *f = memchr(data, 0, size); if (!f) die("bad JOB_ASSIGN");
        size_t hl = (size_t)(f - data);
        char *d = memchr(f + 1, 0, size - hl - 1); if (!d) die("bad JOB_ASSIGN");
        d++;
        const char *a[2] = { data, d }; size_t l[2] = { hl, size - (size_t)(d - data) };
        put_packet(c, WORK_COMPLETE, a, l, 2);
        put_packet(c, GRAB_JOB, NULL, NULL, 0);
        if (mode != M_FUNCS) done_jobs++;
    } else if (type == ERROR) die("server sent ERROR to a worker");
}

static void on_work_complete(conn_t *c, char *data, uint32_t size) {
    char *z = memchr(data, 0, size);
    uint32_t hl = z ? (uint32_t)(z - data) : size;
    for (int i = 0; i < depth; i++) {
        slot_t *s = &c->slots[i];
        if (s->live && s->hlen == hl && !memcmp(s->handle, data, hl)) {
            record(s->sent_at); s->live = 0; c->outstanding--; done_jobs++;
            top_up(c);
            return;
        }
    }
    die("WORK_COMPLETE for a handle this client is not waiting on");
}

static void on_client_packet(conn_t *c, uint32_t type, char *data, uint32_t size) {
    if (type == JOB_CREATED) {
        if (mode != M_FUNCS) { retire_oldest(c); top_up(c); return; }
        if (size > MAX_HANDLE || size == 0) die("JOB_CREATED handle empty or too long");
        slot_t *s = oldest_unnamed(c);
        memcpy(s->handle, data, size); s->hlen = size;
    } else if (type == WORK_COMPLETE) {
        on_work_complete(c, data, size);
    } else if (type == WORK_FAIL || type == WORK_EXCEPTION) {
        die("a job failed");
    } else if (type == ERROR) {
        char *z = memchr(data, 0, size);   /* ERROR is CODE\0TEXT */
        int cl = z ? (int)(z - data) : (int)size;
        fprintf(stderr, "gfill: server ERROR %.*s: %.*s\n", cl, data,
                z ? (int)(size - (uint32_t)cl - 1) : 0, z ? z + 1 : "");
        exit(1);
    }
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 131072; c->in = xrealloc(c->in, c->in_cap);
        }
        ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (n == 0) die("server closed a connection");
        if (n < 0) { if (errno == EAGAIN) break; die("read failed"); }
        c->in_len += (size_t)n;
    }
    size_t off = 0;
    while (c->in_len - off >= 12) {
        if (memcmp(c->in + off, "\0RES", 4)) die("bad magic from server");
        uint32_t t, s; memcpy(&t, c->in + off + 4, 4); memcpy(&s, c->in + off + 8, 4);
        t = ntohl(t); s = ntohl(s);
        if (c->in_len - off < 12 + (size_t)s) break;
        if (c->is_worker) on_worker_packet(c, t, c->in + off + 12, s);
        else on_client_packet(c, t, c->in + off + 12, s);
        off += 12 + s;
    }
    memmove(c->in, c->in + off, c->in_len - off); c->in_len -= off;
}

static conn_t *open_conn(const char *host, int port, int is_worker) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) die("HOST must be an IPv4 address");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa)) die("connect failed");
    int one = 1; setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    conn_t *c = calloc(1, sizeof *c); if (!c) die("out of memory");
    c->fd = fd; c->is_worker = is_worker;
    c->slots = calloc((size_t)depth, sizeof(slot_t)); if (!c->slots) die("out of memory");
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    return c;
}

static void pump(conn_t **conns, int n, double t0, int (*finished)(void)) {
    struct epoll_event evs[256];
    for (int i = 0; i < n; i++) flush(conns[i]);
    while (!finished()) {
        int k = epoll_wait(ep, evs, 256, 1000);
        if (now() - t0 > timeout_s) die("timed out before all jobs completed");
        for (int i = 0; i < k; i++) {
            conn_t *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
            flush(c);
        }
    }
}

static int jobs_finished(void) {     /* fill has no workers: done when all are accepted */
    return mode == M_FILL ? lat_n >= total_jobs : done_jobs >= total_jobs;
}
static int echoes_finished(void) { return echoes_pending == 0; }

static int cmpd(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y);
}

static void usage(void) {
    fprintf(stderr, "usage: gfill fill|drain|funcs|bgu HOST PORT [-j JOBS] [-c CLIENTS] [-w WORKERS]"
                    " [-d DEPTH] [-s PAYLOAD] [-f FUNC] [-F NFUNCS] [-k KEYPREFIX] [-t TIMEOUT_S]\n");
    exit(2);
}

static long num(const char *s, long lo) {
    char *end; long v = strtol(s, &end, 10);
    if (*end || v < lo) { fprintf(stderr, "gfill: bad number '%s' (minimum %ld)\n", s, lo); exit(2); }
    return v;
}

static void parse(int argc, char **argv) {
    if (argc < 4 || (argc - 4) % 2) usage();
    if (!strcmp(argv[1], "fill")) mode = M_FILL;
    else if (!strcmp(argv[1], "drain")) mode = M_DRAIN;
    else if (!strcmp(argv[1], "funcs")) mode = M_FUNCS;
    else if (!strcmp(argv[1], "bgu")) mode = M_BGU;
    else usage();
    for (int i = 4; i < argc; i += 2) {
        const char *o = argv[i], *v = argv[i + 1];
        if (!strcmp(o, "-j")) total_jobs = num(v, 1);
        else if (!strcmp(o, "-c")) nclients = (int)num(v, 1);
        else if (!strcmp(o, "-w")) nworkers = (int)num(v, 0);
        else if (!strcmp(o, "-d")) depth = (int)num(v, 1);
        else if (!strcmp(o, "-s")) payload_len = (size_t)num(v, 0);
        else if (!strcmp(o, "-f")) func = v;
        else if (!strcmp(o, "-F")) nfuncs = (int)num(v, 1);
        else if (!strcmp(o, "-k")) keyprefix = v;
        else if (!strcmp(o, "-t")) timeout_s = (double)num(v, 1);
        else usage();
    }
    if (strlen(keyprefix) > 40) die("key prefix too long (unique keys are limited to 64 bytes)");
    if (strlen(func) > 100) die("function name too long");
    if ((mode == M_DRAIN || mode == M_FUNCS || mode == M_BGU) && nworkers < 1) die("this mode needs -w >= 1");
}

int main(int argc, char **argv) {
    parse(argc, argv);
    const char *host = argv[2]; int port = (int)num(argv[3], 1);
    payload = malloc(payload_len + 1); if (!payload) die("out of memory");
    memset(payload, 'x', payload_len);
    if (mode == M_DRAIN) nclients = 0;
    if (mode == M_FILL) nworkers = 0;
    if (nclients) { per_client = total_jobs / nclients; total_jobs = per_client * nclients; }
    if (total_jobs < 1) die("fewer jobs than clients");
    lat = calloc((size_t)total_jobs + 1, sizeof(double)); if (!lat) die("out of memory");
    ep = epoll_create1(0);
    conn_t **conns = calloc((size_t)(nclients + nworkers), sizeof *conns);
    double t0 = now(), reg_secs = 0;
    for (int i = 0; i < nworkers; i++) {
        conn_t *w = conns[i] = open_conn(host, port, 1);
        for (long f = 0; f < nfuncs; f++) {
            char fn[128]; size_t fl; func_name(f, fn, &fl);
            const char *a[1] = { fn }; size_t l[1] = { fl };
            put_packet(w, CAN_DO, a, l, 1);
        }
        const char *a[1] = { "sync" }; size_t l[1] = { 4 };
        put_packet(w, ECHO_REQ, a, l, 1);
        echoes_pending++;
    }
    if (nworkers) { pump(conns, nworkers, t0, echoes_finished); reg_secs = now() - t0; }
    for (int i = 0; i < nworkers; i++) put_packet(conns[i], GRAB_JOB, NULL, NULL, 0);
    t0 = now();
    for (int i = 0; i < nclients; i++) {
        conn_t *c = conns[nworkers + i] = open_conn(host, port, 0);
        top_up(c);
    }
    pump(conns, nclients + nworkers, t0, jobs_finished);
    double secs = now() - t0, p50 = 0, p99 = 0;
    if (lat_n) {
        qsort(lat, (size_t)lat_n, sizeof(double), cmpd);
        p50 = lat[lat_n / 2]; p99 = lat[(long)(lat_n * 0.99)];
    }
    printf("mode=%s jobs=%ld clients=%d workers=%d depth=%d payload=%zu funcs=%d secs=%.3f "
           "jobs_per_s=%.0f p50_us=%.0f p99_us=%.0f register_secs=%.3f\n",
           argv[1], total_jobs, nclients, nworkers, depth, payload_len, nfuncs, secs,
           total_jobs / secs, p50 * 1e6, p99 * 1e6, reg_secs);
    return 0;
}
