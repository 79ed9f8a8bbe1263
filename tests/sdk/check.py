#!/usr/bin/env python3
"""Drives the official openai / anthropic Python SDKs against a base URL
(mock-llm directly, or ringway in front of it) and checks what they see.

Usage: check.py SCENARIO BASE_URL [--model M] [--key K] [--azure-deployment D]

Prints one JSON object with what was observed (text, usage, ids, headers)
and exits non-zero with a message when the SDK fails or the result is
inconsistent. Scenarios: openai_chat, openai_stream, openai_stream_usage,
openai_embeddings, openai_embeddings_float, azure_chat, azure_embeddings,
anthropic_messages, anthropic_stream, openai_responses,
openai_responses_stream, openai_responses_conversation.
"""
import argparse, json, sys


def fail(msg):
    print(json.dumps({"error": msg}))
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def openai_client(base, key):
    from openai import OpenAI
    return OpenAI(base_url=base, api_key=key, max_retries=0, timeout=30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario")
    ap.add_argument("base")
    ap.add_argument("--model", default="gpt-4o-mini")
    ap.add_argument("--key", default="sk-test")
    ap.add_argument("--azure-deployment", default="dep1")
    a = ap.parse_args()
    out = {}
    msgs = [{"role": "system", "content": "You are a mathematician"}, {"role": "user", "content": "What is 1+1?"}]
    s = a.scenario
    if s == "openai_chat":
        raw = openai_client(a.base, a.key).chat.completions.with_raw_response.create(model=a.model, messages=msgs)
        r = raw.parse()
        check(r.choices[0].message.content, "empty completion")
        check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "usage does not add up")
        out = {"text": r.choices[0].message.content, "model": r.model, "id": r.id, "usage": r.usage.model_dump(),
               "headers": {k.lower(): v for k, v in raw.headers.items()}}
    elif s in ("openai_stream", "openai_stream_usage"):
        kw = {"stream_options": {"include_usage": True}} if s == "openai_stream_usage" else {}
        text, usage, chunks, model = "", None, 0, None
        for ch in openai_client(a.base, a.key).chat.completions.create(model=a.model, messages=msgs, stream=True, **kw):
            chunks += 1
            model = ch.model
            if ch.choices and ch.choices[0].delta.content:
                text += ch.choices[0].delta.content
            if ch.usage:
                usage = ch.usage.model_dump()
        check(text, "no streamed text")
        if s == "openai_stream_usage":
            check(usage is not None, "no usage chunk although include_usage was set")
        else:
            check(usage is None, "a usage chunk arrived although include_usage was not set")
        out = {"text": text, "usage": usage, "chunks": chunks, "model": model}
    elif s == "openai_responses":
        raw = openai_client(a.base, a.key).responses.with_raw_response.create(
            model=a.model, instructions="You are a mathematician", input="What is 1+1?", max_output_tokens=100)
        r = raw.parse()
        check(r.status == "completed", f"status {r.status}")
        check(r.output_text, "empty output_text")
        u = r.usage
        check(u.total_tokens == u.input_tokens + u.output_tokens, "usage does not add up")
        out = {"text": r.output_text, "model": r.model, "id": r.id, "usage": u.model_dump(),
               "headers": {k.lower(): v for k, v in raw.headers.items()}}
    elif s == "openai_responses_stream":
        deltas, kinds = "", []
        with openai_client(a.base, a.key).responses.stream(
                model=a.model, input=[{"role": "user", "content": "What is 1+1?"}]) as st:
            for ev in st:
                kinds.append(ev.type)
                if ev.type == "response.output_text.delta":
                    deltas += ev.delta
            final = st.get_final_response()
        check(deltas and deltas == final.output_text, "streamed deltas differ from the final response")
        check(kinds[0] == "response.created" and kinds[-1] == "response.completed", f"event order {kinds[:2]}…{kinds[-1:]}")
        out = {"text": deltas, "usage": final.usage.model_dump(), "model": final.model, "id": final.id,
               "events": len(kinds)}
    elif s == "openai_responses_conversation":
        # A conversation by previous_response_id (JSON, then streamed), then
        # the stored response's endpoints; which instance answered each.
        import openai
        c = openai_client(a.base, a.key)
        instances, attempts = [], []
        def seen(raw):
            instances.append(raw.headers.get("x-ringway-instance"))
            attempts.append(raw.headers.get("x-ringway-attempts"))
            return raw.parse()
        r1 = seen(c.responses.with_raw_response.create(model=a.model, input="What is 1+1?"))
        r2 = seen(c.responses.with_raw_response.create(model=a.model, input="And 2+2?", previous_response_id=r1.id))
        check(r2.previous_response_id == r1.id, "the follow-up does not name its previous response")
        with c.responses.stream(model=a.model, input="And 3+3?", previous_response_id=r2.id) as st:
            for _ in st:
                pass
            r3 = st.get_final_response()
        check(r3.usage.input_tokens > r2.usage.input_tokens, "the conversation was not counted as input")
        got = seen(c.responses.with_raw_response.retrieve(r3.id))
        check(got.id == r3.id and got.output_text == r3.output_text, "retrieved another response")
        replay = [ev.type for ev in c.responses.retrieve(r3.id, stream=True)]
        check(replay[0] == "response.created" and replay[-1] == "response.completed", f"replay {replay}")
        items = c.responses.input_items.list(r1.id)
        check(items.data and items.data[0].content[0].text == "What is 1+1?", "input items differ")
        c.responses.delete(r1.id)
        try:
            c.responses.retrieve(r1.id)
            fail("a deleted response is still found")
        except openai.NotFoundError:
            pass
        try:
            c.responses.create(model=a.model, input="x", previous_response_id="resp_nowhere")
            fail("a follow-up of an unknown response was accepted")
        except openai.BadRequestError as e:
            code = e.code
        # The Conversations API: a conversation and responses in it.
        conv_instances = []
        def seen_conv(raw):
            conv_instances.append(raw.headers.get("x-ringway-instance"))
            attempts.append(raw.headers.get("x-ringway-attempts"))
            return raw.parse()
        conv = seen_conv(c.conversations.with_raw_response.create(
            items=[{"type": "message", "role": "user", "content": "Hello"}]))
        for q in ("What is 1+1?", "And 2+2?"):
            r = seen_conv(c.responses.with_raw_response.create(model=a.model, input=q, conversation=conv.id))
            check(r.conversation is not None and r.conversation.id == conv.id, "the response left its conversation")
        listed = c.conversations.items.list(conv.id, order="asc")
        check(len(listed.data) == 1 + 2 * 2, f"{len(listed.data)} conversation items")
        c.conversations.delete(conv.id)
        out = {"instances": instances, "conversation_instances": conv_instances, "attempts": attempts,
               "turns": 3, "not_found_code": code}
    elif s in ("openai_embeddings", "openai_embeddings_float"):
        kw = {"encoding_format": "float"} if s == "openai_embeddings_float" else {}
        r = openai_client(a.base, a.key).embeddings.create(model=a.model, input=["hello world", "second input"], **kw)
        check(len(r.data) == 2, "expected two embeddings")
        check(all(len(d.embedding) > 0 and isinstance(d.embedding[0], float) for d in r.data), "bad vectors")
        out = {"dims": len(r.data[0].embedding), "usage": r.usage.model_dump(), "model": r.model}
    elif s in ("azure_chat", "azure_embeddings"):
        from openai import AzureOpenAI
        c = AzureOpenAI(azure_endpoint=a.base, api_key=a.key, api_version="2024-02-01", max_retries=0, timeout=30)
        if s == "azure_chat":
            r = c.chat.completions.create(model=a.azure_deployment, messages=msgs)
            check(r.choices[0].message.content, "empty completion")
            out = {"text": r.choices[0].message.content, "usage": r.usage.model_dump()}
        else:
            r = c.embeddings.create(model=a.azure_deployment, input="hello")
            check(len(r.data[0].embedding) > 0, "empty vector")
            out = {"dims": len(r.data[0].embedding)}
    elif s in ("anthropic_messages", "anthropic_stream"):
        from anthropic import Anthropic
        c = Anthropic(base_url=a.base, api_key=a.key, max_retries=0, timeout=30)
        am = [{"role": "user", "content": "What is 1+1?"}]
        if s == "anthropic_messages":
            r = c.messages.create(model=a.model, max_tokens=100, system="You are a mathematician", messages=am)
            check(r.content and r.content[0].text, "empty message")
            out = {"text": r.content[0].text, "usage": r.usage.model_dump(), "stop_reason": r.stop_reason, "model": r.model}
        else:
            text = ""
            with c.messages.stream(model=a.model, max_tokens=100, messages=am) as st:
                for t in st.text_stream:
                    text += t
                final = st.get_final_message()
            check(text and text == final.content[0].text, "streamed text differs from the final message")
            check(final.usage.output_tokens > 0, "no output tokens")
            out = {"text": text, "usage": final.usage.model_dump(), "stop_reason": final.stop_reason}
    else:
        fail(f"unknown scenario {s}")
    print(json.dumps(out))


if __name__ == "__main__":
    try:
        main()
    except SystemExit:
        raise
    except Exception as e:  # the SDK raised: report it as a failure
        fail(f"{type(e).__name__}: {e}")
