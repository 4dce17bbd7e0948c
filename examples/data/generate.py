#!/usr/bin/env python3
"""Generate the bundled sample chat data: a customer-support bot for Acme.

    python examples/data/generate.py [--out-dir examples/data] [--train 300] [--eval 40] [--seed 7]

Writes train.jsonl and eval.jsonl in the chat format loractl trains on:
{"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}]}.

The data is small on purpose but learnable: every answer follows from the question's
topic (and the product it names), so even a tiny model's loss falls within a minute of
CPU training. Every example shares one system prompt, no user turn repeats, and the eval
set asks new questions (different wording or product), so the eval loss measures
generalisation rather than recall. The output is the same for the same arguments.
"""

import argparse
import json
import os
import random

SYSTEM = "You are a customer support bot for Acme."

PRODUCTS = [
    "Rocket Skates", "Anvil", "Giant Magnet", "Jet Pack", "Bird Seed",
    "Tornado Kit", "Spring Shoes", "Portable Hole", "Bat Suit", "Earthquake Pills",
]

OPENERS = ["", "Hi, ", "Hello! ", "Quick question: ", "Hey there, "]
CLOSERS = ["", " Thanks!", " Thank you.", " Please help."]

# topic: (question phrasings, answer). "{p}" is a product name; topics whose phrasings
# name a product are expanded over PRODUCTS.
TOPICS = {
    "reset_password": (
        ["how do I reset my password?", "I forgot my password.", "I can't log in, I lost my password.",
         "where do I change a forgotten password?"],
        "To reset your password: 1. Go to /forgot-password. 2. Enter your email. 3. Open the link we send you. "
        "We never email plain passwords.",
    ),
    "change_email": (
        ["how do I change the email on my account?", "I want to use a new email address.",
         "can I update my login email?"],
        "To change your email: 1. Go to Settings > Account. 2. Enter the new address. 3. Confirm it from your inbox.",
    ),
    "track_order": (
        ["where is my {p} order?", "how can I track my {p}?", "my {p} has not arrived yet."],
        "You can track your {p} at /orders: open the order and press Track. "
        "Tracking updates within 24 hours of shipping.",
    ),
    "cancel_order": (
        ["can I cancel my {p} order?", "I ordered a {p} by mistake, please cancel it.",
         "how do I cancel the {p} I just bought?"],
        "To cancel your {p} order: 1. Go to /orders. 2. Choose the order. 3. Press Cancel. "
        "Orders can be cancelled until they ship.",
    ),
    "return_item": (
        ["how do I return my {p}?", "I want to send back a {p}.", "can I return a {p} I do not like?"],
        "You can return your {p} within 30 days: 1. Go to /returns. 2. Print the free label. "
        "3. Drop the box at any post office.",
    ),
    "refund_status": (
        ["when will I get my refund for the {p}?", "I returned a {p}, where is my money?",
         "how long does a refund for a {p} take?"],
        "Refunds for a returned {p} reach your original payment method 5 to 7 business days "
        "after we receive the item.",
    ),
    "broken_item": (
        ["my {p} is broken.", "the {p} I got does not work.", "my new {p} arrived damaged."],
        "Sorry about your {p}! Send a photo to support@acme.example and we will ship a replacement "
        "at no cost within 2 business days.",
    ),
    "warranty": (
        ["is there a warranty on the {p}?", "how long is the {p} warranty?", "does my {p} have a guarantee?"],
        "Every {p} has a 2 year warranty. Keep your order number: we repair or replace it for free.",
    ),
    "shipping_time": (
        ["how long does shipping take?", "when will my order ship?", "how fast is delivery?"],
        "Standard shipping takes 3 to 5 business days. Express shipping takes 1 to 2 business days.",
    ),
    "international": (
        ["do you ship abroad?", "can I order from another country?", "do you deliver outside the country?"],
        "Yes, we ship to over 40 countries. Shipping costs and times are shown at checkout.",
    ),
    "change_address": (
        ["how do I change my shipping address?", "I moved, can I update my delivery address?",
         "my order has the wrong address."],
        "To change the address: 1. Go to /orders. 2. Choose the order. 3. Press Edit Address. "
        "This works until the order ships.",
    ),
    "payment_method": (
        ["how do I update my credit card?", "I want to change my payment method.",
         "my card expired, how do I add a new one?"],
        "To update your payment method: 1. Go to Settings > Billing. 2. Press Add Card. 3. Set it as default.",
    ),
    "invoice": (
        ["where can I download my invoice?", "I need a receipt for my order.", "how do I get an invoice?"],
        "You can download every invoice at /orders: open the order and press Invoice to get a PDF.",
    ),
    "cancel_subscription": (
        ["how do I cancel my subscription?", "I want to stop my Acme Plus plan.",
         "please end my monthly subscription."],
        "To cancel Acme Plus: 1. Go to Settings > Plan. 2. Press Cancel Plan. "
        "You keep the benefits until the end of the billing period.",
    ),
    "upgrade_plan": (
        ["how do I upgrade to Acme Plus?", "what does Acme Plus cost?", "can I get free shipping on every order?"],
        "Acme Plus costs 9 dollars a month and includes free express shipping. "
        "Go to Settings > Plan and press Upgrade.",
    ),
    "two_factor": (
        ["how do I turn on two-factor authentication?", "can I add a second login step?",
         "how do I make my account more secure?"],
        "To turn on two-factor authentication: 1. Go to Settings > Security. 2. Press Enable 2FA. "
        "3. Scan the code with your authenticator app.",
    ),
    "delete_account": (
        ["how do I delete my account?", "please remove all my data.", "I want to close my Acme account."],
        "To delete your account: 1. Go to Settings > Privacy. 2. Press Delete Account. "
        "We erase your data within 30 days.",
    ),
    "contact_hours": (
        ["when is support open?", "what are your support hours?", "can I call you on weekends?"],
        "Our support team is available Monday to Friday, 8 am to 6 pm. Chat is open every day.",
    ),
    "human_agent": (
        ["can I talk to a human?", "I want to speak to a real person.", "please connect me to an agent."],
        "Of course. Type agent in this chat or call 1-800-ACME and a support agent will take over.",
    ),
    "discount_code": (
        ["my discount code does not work.", "the promo code is rejected at checkout.", "why is my coupon invalid?"],
        "Discount codes are case sensitive and work once per account. Check the expiry date, "
        "or send us the code and we will check it.",
    ),
}


def user_turns():
    """Every distinct (topic, user text, answer) the templates can produce, in a fixed order."""
    out = []
    for topic, (phrasings, answer) in TOPICS.items():
        for phrasing in phrasings:
            products = PRODUCTS if "{p}" in phrasing else [None]
            for product in products:
                for opener in OPENERS:
                    for closer in CLOSERS:
                        q = phrasing.format(p=product) if product else phrasing
                        text = opener + (q[0].upper() + q[1:] if opener in ("", "Hello! ") else q) + closer
                        a = answer.format(p=product) if product else answer
                        out.append((topic, text, a))
    return out


def row(user, answer):
    return {"messages": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
    ]}


def split(n_train, n_eval, seed):
    """Pick train and eval rows round-robin over topics so both sets cover every topic."""
    rng = random.Random(seed)
    by_topic = {}
    for topic, user, answer in user_turns():
        by_topic.setdefault(topic, []).append((user, answer))
    for items in by_topic.values():
        rng.shuffle(items)
    topics = sorted(by_topic)
    picked, i = [], 0
    while len(picked) < n_train + n_eval:
        topic = topics[i % len(topics)]
        idx = i // len(topics)
        if idx >= len(by_topic[topic]):
            raise SystemExit("not enough distinct questions for the requested sizes")
        picked.append(by_topic[topic][idx])
        i += 1
    eval_rows, train_rows = picked[:n_eval], picked[n_eval:]
    rng.shuffle(train_rows)
    return train_rows, eval_rows


def write(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for user, answer in rows:
            f.write(json.dumps(row(user, answer), ensure_ascii=False) + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", default=here)
    p.add_argument("--train", type=int, default=300)
    p.add_argument("--eval", type=int, default=40)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    train_rows, eval_rows = split(args.train, args.eval, args.seed)
    write(os.path.join(args.out_dir, "train.jsonl"), train_rows)
    write(os.path.join(args.out_dir, "eval.jsonl"), eval_rows)
    print(f"wrote {len(train_rows)} train and {len(eval_rows)} eval examples to {args.out_dir}")


if __name__ == "__main__":
    main()
