/*
 * deadline.c: timeouts for many connections at the cost of a list link each.
 *
 * A connection waits for one of a few kinds of thing (a request head, an idle keep-alive
 * period, a body, a write to drain), and every wait of one kind on one server has the same
 * timeout. So deadlines are kept in lists, one per (duration, expiry function): appending
 * keeps a list in deadline order, arming and disarming are O(1), and a single libuv timer,
 * set to the earliest head among the lists, serves them all. A uv_timer_t per connection
 * would cost 152 bytes and a heap operation per wait instead.
 *
 * Lists are never freed: there is one per distinct duration an app uses (a handful), found
 * by a linear search that remembers the last list used. An app that gives every socket a
 * different timeout pays a longer search; it still works.
 *
 * Expiry may be up to 1/64 of the duration late (at most 50 ms), so that a busy server's
 * timer does not fire once for every connection's millisecond.
 */
#include <stdlib.h>

#include "luaio.h"

#define MAX_MS 0x7fffffffu /* deadlines compare modulo 2^32: at most 2^31 ms ahead */
#define MAX_LISTS 65535

typedef struct {
  luaio_deadline *head, *tail;
  uint32_t ms, slack;
  luaio_expire_fn expire;
} dlist_t;

static dlist_t *lists;
static int nlists, lists_cap, last_used = -1;
static uv_timer_t timer;
static int timer_ready, timer_on;
static uint32_t timer_due; /* loop time the timer is set for, when timer_on */

/* a is before b, modulo 2^32 */
#define before(a, b) ((int32_t)((a) - (b)) < 0)

static uint32_t now32(void) { return (uint32_t)uv_now(luaio_loop()); }

static int list_for(uint32_t ms, luaio_expire_fn expire) {
  if (last_used >= 0 && lists[last_used].ms == ms && lists[last_used].expire == expire)
    return last_used;
  for (int i = 0; i < nlists; i++)
    if (lists[i].ms == ms && lists[i].expire == expire) return last_used = i;
  if (nlists == MAX_LISTS) return -1;
  if (nlists == lists_cap) {
    int cap = lists_cap ? lists_cap * 2 : 8;
    dlist_t *p = realloc(lists, (size_t)cap * sizeof *p);
    if (p == NULL) return -1;
    lists = p;
    lists_cap = cap;
  }
  dlist_t *l = &lists[nlists];
  l->head = l->tail = NULL;
  l->ms = ms;
  l->expire = expire;
  l->slack = ms / 64 < 50 ? ms / 64 : 50;
  return last_used = nlists++;
}

static void on_timer(uv_timer_t *t);

/* Sets the timer for the earliest deadline among the lists' heads (plus its slack). */
static void timer_set(void) {
  uint32_t now = now32(), due = 0;
  int any = 0;
  for (int i = 0; i < nlists; i++) {
    luaio_deadline *d = lists[i].head;
    if (d == NULL) continue;
    uint32_t at = d->at + lists[i].slack;
    if (!any || before(at, due)) due = at;
    any = 1;
  }
  if (!any) {
    if (timer_on) uv_timer_stop(&timer);
    timer_on = 0;
    return;
  }
  if (timer_on && due == timer_due) return;
  timer_on = 1;
  timer_due = due;
  uv_timer_start(&timer, on_timer, before(now, due) ? due - now : 0, 0);
}

static void unlink_deadline(luaio_deadline *d) {
  dlist_t *l = &lists[d->list - 1];
  if (d->prev)
    d->prev->next = d->next;
  else
    l->head = d->next;
  if (d->next)
    d->next->prev = d->prev;
  else
    l->tail = d->prev;
  d->prev = d->next = NULL;
  d->list = 0;
}

static void on_timer(uv_timer_t *t) {
  (void)t;
  timer_on = 0;
  uint32_t now = now32();
  for (int i = 0; i < nlists; i++) {
    /* Taken off before the call: the function may arm this or any other deadline (and
     * grow `lists`, hence no pointer into it is kept across the call). */
    while (lists[i].head != NULL && !before(now, lists[i].head->at + lists[i].slack)) {
      luaio_deadline *d = lists[i].head;
      luaio_expire_fn expire = lists[i].expire;
      unlink_deadline(d);
      expire(d);
    }
  }
  timer_set();
}

void luaio_deadline_arm(luaio_deadline *d, uint64_t ms, luaio_expire_fn expire) {
  if (d->list != 0) unlink_deadline(d);
  if (ms == 0 || ms > MAX_MS) return;
  if (!timer_ready) {
    uv_timer_init(luaio_loop(), &timer);
    uv_unref((uv_handle_t *)&timer); /* what waits keeps the loop alive, not its deadline */
    timer_ready = 1;
  }
  int i = list_for((uint32_t)ms, expire);
  if (i < 0) return; /* out of memory: this wait has no deadline */
  dlist_t *l = &lists[i];
  uv_update_time(luaio_loop()); /* the cached time is stale after long Lua work */
  d->at = now32() + (uint32_t)ms;
  d->list = (uint16_t)(i + 1);
  d->prev = l->tail;
  d->next = NULL;
  if (l->tail)
    l->tail->next = d;
  else
    l->head = d;
  l->tail = d;
  if (!timer_on || before(d->at + l->slack, timer_due)) timer_set();
}

void luaio_deadline_disarm(luaio_deadline *d) {
  if (d->list != 0) unlink_deadline(d); /* the timer may then fire early, for nothing */
}
