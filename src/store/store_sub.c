/*
 * Subscriptions: the channels a store listens to, SUBSCRIBE on the second
 * link each time it comes up, and the delivery of what is published there.
 */
#include "store/store_int.h"

#include "core/log.h"

#include <string.h>

static struct store_sub *sub_find(struct store *s, const char *ch, size_t len)
{
	for (unsigned i = 0; i < s->n_subs; i++)
		if (s->subs[i].chlen == len &&
		    memcmp(s->subs[i].channel, ch, len) == 0)
			return &s->subs[i];
	return NULL;
}

/* The confirmation of one SUBSCRIBE; anything else means the link cannot be
 * trusted with subscriptions. */
static void subscribe_reply(struct store_link *l, const struct link_cb *cb,
                            const redisReply *r)
{
	char text[80], why[128];

	if (r == NULL || store_reply_subscribed(r))
		return;
	snprintf(why, sizeof(why), "SUBSCRIBE refused: %s",
	         store_reply_text(r, text, sizeof(text)));
	link_fail(l, why);
}

/* One SUBSCRIBE per channel: one confirmation answers one command. */
static int subscribe_one(struct store_link *l, const struct store_sub *sub)
{
	const char *av[2] = {"SUBSCRIBE", sub->channel};
	size_t al[2] = {9, sub->chlen};
	const struct link_cb cb = {subscribe_reply, NULL, NULL};

	return link_send(l, 2, av, al, &cb);
}

void store_sub_on_up(struct store_link *l)
{
	struct store *s = l->s;

	for (unsigned i = 0; i < s->n_subs; i++) {
		if (subscribe_one(l, &s->subs[i]) < 0) {
			link_fail(l, "cannot send SUBSCRIBE");
			return;
		}
	}
}

int store_sub_on_push(struct store_link *l, const redisReply *r)
{
	struct store *s = l->s;
	struct store_push_msg pm;
	struct store_msg m;
	struct store_sub *sub;

	if (store_reply_message(r, &pm) < 0)
		return -1;
	sub = sub_find(s, pm.channel, pm.chlen);
	if (sub == NULL || store_msg_decode(pm.payload, pm.len, &m) < 0) {
		/* Someone else's publication, or garbage: not ours to act
		 * on, and no reason to drop the link. */
		stat_add(&s->st.errors, 1);
		log_debug("store %s: a message %s", s->url,
		          sub ? "that does not decode"
		              : "on no channel of ours");
		return 0;
	}
	stat_add(&s->st.messages, 1);
	sub->cb(sub->arg, (enum store_msg_op)m.op, m.key, m.klen, m.ttl_s);
	return 0;
}

int store_subscribe(struct store *s, const char *channel, store_msg_cb cb,
                    void *arg)
{
	size_t len = channel ? strlen(channel) : 0;
	struct store_sub *sub;

	if (cb == NULL || len == 0 || len > STORE_CHANNEL_MAX ||
	    s->n_subs == STORE_SUBS_MAX)
		return -1;
	sub = &s->subs[s->n_subs];
	sub->chlen =
	    store_name(s, channel, len, sub->channel, sizeof(sub->channel));
	if (sub->chlen == 0 || sub_find(s, sub->channel, sub->chlen) != NULL)
		return -1;
	sub->cb = cb;
	sub->arg = arg;
	s->n_subs++;
	/* Up: subscribe now; otherwise coming up subscribes to all. */
	if (s->sub.state == LINK_UP && subscribe_one(&s->sub, sub) < 0)
		link_fail(&s->sub, "cannot send SUBSCRIBE");
	link_start(&s->sub);
	return 0;
}
