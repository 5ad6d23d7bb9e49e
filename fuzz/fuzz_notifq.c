/* fuzz/fuzz_notifq.c: the SEALDD-S connection status notification queue (src/sdd/proto.c,
 * sg_sdd_notifq_*) driven by a script of pushes, takes at a moving clock, deliveries done
 * (answered, not answered, not tried), retries at a due time and clears, against a model.
 * Properties, besides no crash, leak or undefined behaviour:
 *  - push and admits refuse exactly at the bounds, in all and per owner, with the right reason,
 *    but for a full queue taking an owner that is not suspect by dropping the newest of the
 *    suspect owner with the most queued (at least two; ties to the smallest id);
 *  - take hands out only an owner's oldest outstanding notification (a retried one first), of an
 *    owner with none in delivery, not waiting for a retry that is not yet due, and suspect only
 *    while fewer than max_suspect_busy suspect owners are in delivery; among those, of the
 *    owner that has been ready longest (round robin; retries that fall due rejoin in order of
 *    their due time); it returns nothing only when no owner is eligible;
 *  - the counts (pending, suspect owners in delivery) and the soonest due retry match the model;
 *  - clear frees exactly what is pending. */
#include "fuzz.h"

#include "sdd/proto.h"

#include <string.h>

#define OWNERS 6
#define HELD   64

struct mowner {
	long fifo[300]; /* outstanding notification numbers, oldest first (not those held) */
	size_t n;       /* in fifo */
	int busy, suspect;
	int64_t due;          /* > 0: waiting for a retry */
	size_t count;         /* fifo + held */
	uint64_t since, rseq; /* when it became ready; the order of its retry among equal dues */
};

struct model {
	struct mowner o[OWNERS];
	size_t total, max_total, max_per, max_suspect, suspect_busy;
	uint64_t evicted;
	struct sg_sdd_notif *held[HELD];
	int held_suspect[HELD];
	size_t nheld;
	long next;
	int64_t now;
	uint64_t seq, rseq;
};

static const char *name(int i)
{
	static const char *const N[OWNERS] = {"o0", "o1", "o2", "o3", "o4", "o5"};
	return N[i];
}

static int owner_of(const struct sg_sdd_notif *n)
{
	const char *o = sg_sdd_notif_owner(n);
	FUZZ_CHECK(o[0] == 'o' && o[1] >= '0' && o[1] < '0' + OWNERS && !o[2]);
	return o[1] - '0';
}

static int eligible(const struct model *m, int i)
{
	const struct mowner *o = &m->o[i];
	return o->n && !o->busy && (!o->due || o->due <= m->now) &&
	       (!o->suspect || m->suspect_busy < m->max_suspect);
}

static void check_due(const struct model *m, const struct sg_sdd_notifq *q)
{
	int64_t soonest = -1;
	for (int i = 0; i < OWNERS; i++)
		if (m->o[i].due && (soonest < 0 || m->o[i].due < soonest))
			soonest = m->o[i].due;
	FUZZ_CHECK(sg_sdd_notifq_next_due(q) == soonest);
	FUZZ_CHECK(q->n == m->total);
	FUZZ_CHECK(q->suspect_busy == m->suspect_busy);
}

/* The owner a full queue drops the newest of for an owner that is not suspect: suspect, at
 * least two queued, the most queued, ties to the smallest id (the names sort as the indexes);
 * -1 when none. */
static int victim(const struct model *m)
{
	int v = -1;
	for (int j = 0; j < OWNERS; j++)
		if (m->o[j].suspect && m->o[j].n >= 2 && (v < 0 || m->o[j].n > m->o[v].n))
			v = j;
	return v;
}

static void push(struct model *m, struct sg_sdd_notifq *q, int i)
{
	struct mowner *o = &m->o[i];
	int want = 0, v = -1;
	if (m->total >= m->max_total) {
		if (!o->suspect && o->count < m->max_per)
			v = victim(m);
		want = v < 0 ? 1 : 0;
	} else if (o->count >= m->max_per) {
		want = 2;
	}
	FUZZ_CHECK(sg_sdd_notifq_admits(q, name(i)) == (want == 0));
	char *body = malloc(24);
	FUZZ_CHECK(body != NULL);
	snprintf(body, 24, "%ld", m->next);
	const char *why = NULL;
	int rc = sg_sdd_notifq_push(q, name(i), "sid", body, &why);
	FUZZ_CHECK(rc >= 0);
	FUZZ_CHECK((rc == 0) == (want == 0));
	if (rc) {
		FUZZ_CHECK(strcmp(why, want == 1 ? "max_total" : "max_per_owner") == 0);
		free(body);
		return;
	}
	if (v >= 0) { /* the victim's newest went */
		m->o[v].n--;
		m->o[v].count--;
		m->total--;
		FUZZ_CHECK(q->evicted == ++m->evicted);
	}
	FUZZ_CHECK(o->n < sizeof o->fifo / sizeof o->fifo[0]);
	if (!o->n && !o->busy && !o->due) /* it becomes ready */
		o->since = m->seq++;
	o->fifo[o->n++] = m->next++;
	o->count++;
	m->total++;
}

static void take(struct model *m, struct sg_sdd_notifq *q)
{
	if (m->nheld >= HELD)
		return;
	for (;;) { /* due retries rejoin, soonest first, in retry order among equal dues */
		int w = -1;
		for (int i = 0; i < OWNERS; i++) {
			const struct mowner *o = &m->o[i];
			if (o->due && o->due <= m->now &&
			    (w < 0 || o->due < m->o[w].due ||
			     (o->due == m->o[w].due && o->rseq < m->o[w].rseq)))
				w = i;
		}
		if (w < 0)
			break;
		m->o[w].due = 0;
		m->o[w].since = m->seq++;
	}
	int any = 0, first = -1;
	for (int i = 0; i < OWNERS; i++)
		if (eligible(m, i)) {
			any = 1;
			if (first < 0 || m->o[i].since < m->o[first].since)
				first = i;
		}
	struct sg_sdd_notif *n = sg_sdd_notifq_take(q, m->now);
	FUZZ_CHECK((n != NULL) == (any != 0));
	if (!n)
		return;
	int i = owner_of(n);
	struct mowner *o = &m->o[i];
	FUZZ_CHECK(eligible(m, i));
	FUZZ_CHECK(i == first);                              /* the one ready longest */
	FUZZ_CHECK(strtol(n->body, NULL, 10) == o->fifo[0]); /* its oldest, a retried one first */
	memmove(o->fifo, o->fifo + 1, (o->n - 1) * sizeof o->fifo[0]);
	o->n--;
	o->busy = 1;
	m->held_suspect[m->nheld] = o->suspect;
	m->suspect_busy += o->suspect != 0;
	m->held[m->nheld++] = n;
}

/* Removes held[k] from the held list; returns it. */
static struct sg_sdd_notif *unhold(struct model *m, size_t k, struct mowner **o)
{
	struct sg_sdd_notif *n = m->held[k];
	*o = &m->o[owner_of(n)];
	m->suspect_busy -= m->held_suspect[k] != 0;
	m->held[k] = m->held[m->nheld - 1];
	m->held_suspect[k] = m->held_suspect[m->nheld - 1];
	m->nheld--;
	(*o)->busy = 0;
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3 || size > 4096)
		return 0;
	struct model *m = calloc(1, sizeof *m);
	struct sg_sdd_notifq *q = malloc(sizeof *q);
	FUZZ_CHECK(m && q);
	m->max_total = 1 + data[0] % 24;
	m->max_per = 1 + data[1] % 12;
	m->max_suspect = data[2] % 5;
	m->now = 1;
	sg_sdd_notifq_init(q, m->max_total, m->max_per, m->max_suspect);
	for (size_t p = 3; p + 1 < size; p += 2) {
		uint8_t op = data[p] % 6, arg = data[p + 1];
		switch (op) {
		case 0:
		case 1:
			push(m, q, arg % OWNERS);
			break;
		case 2:
			m->now += arg % 8;
			take(m, q);
			break;
		case 3: { /* done: answered, not answered, not tried */
			if (!m->nheld)
				break;
			struct mowner *o;
			struct sg_sdd_notif *n = unhold(m, arg % m->nheld, &o);
			int answered = (int)(arg / 64) % 3 - 1;
			sg_sdd_notifq_done(q, n, answered);
			if (answered >= 0)
				o->suspect = !answered;
			o->count--;
			m->total--;
			if (o->n) /* its next is ready, behind the others */
				o->since = m->seq++;
			break;
		}
		case 4: { /* retry at now + 0..15 */
			if (!m->nheld)
				break;
			struct mowner *o;
			struct sg_sdd_notif *n = unhold(m, arg % m->nheld, &o);
			long num = strtol(n->body, NULL, 10);
			int64_t due = m->now + arg / 16;
			sg_sdd_notifq_retry(q, n, due);
			memmove(o->fifo + 1, o->fifo, o->n * sizeof o->fifo[0]);
			o->fifo[0] = num;
			o->n++;
			o->suspect = 1;
			o->due = due > 0 ? due : 1;
			o->rseq = m->rseq++;
			break;
		}
		case 5: /* clear, only with nothing in delivery (the caller's rule) */
			if (m->nheld || arg % 4)
				break;
			FUZZ_CHECK(sg_sdd_notifq_clear(q) == m->total);
			memset(m->o, 0, sizeof m->o);
			m->total = m->suspect_busy = 0;
			break;
		}
		check_due(m, q);
	}
	while (m->nheld) { /* what is still held is given up, then everything is freed */
		struct mowner *o;
		sg_sdd_notifq_done(q, unhold(m, 0, &o), 1);
		m->total--;
		o->count--;
	}
	FUZZ_CHECK(sg_sdd_notifq_clear(q) == m->total);
	free(q);
	free(m);
	return 0;
}
