// Assistants code as Node users wrote it for the hosted API, run against this server with the
// official `openai` npm package (v4, the line that code was written for; see package.json).
//
// Why it exists: the Node SDK is half of the ecosystem that used the hosted API, and its
// helpers (createAndPoll, AssistantStream's events and finalRun(), submitToolOutputsStream,
// `for await` pagination, error classes) parse the wire in their own way. Each scenario runs
// one of them, checks what it can see itself, and prints one JSON line of what it saw for
// tests/integration/test_node_sdk.py, which scripts the model and checks the server's side.
//
// Usage: OPENAI_BASE_URL=… OPENAI_API_KEY=… node scenarios.mjs <scenario>
// (the SDK reads both variables itself, as in a user's program).

import assert from "node:assert/strict";
import OpenAI, { APIError, AuthenticationError, BadRequestError, NotFoundError } from "openai";

const client = new OpenAI({ maxRetries: 0 });

async function setup(question, assistantParams = {}) {
  const assistant = await client.beta.assistants.create({
    model: "gpt-4o",
    instructions: "You are a helpful assistant.",
    ...assistantParams,
  });
  const thread = await client.beta.threads.create();
  await client.beta.threads.messages.create(thread.id, { role: "user", content: question });
  return { assistant, thread };
}

function text(message) {
  assert.equal(message.content[0].type, "text");
  return message.content[0].text.value;
}

const scenarios = {
  // runs.createAndPoll, then the thread's messages.
  async "create-and-poll"() {
    const { assistant, thread } = await setup("What is a penguin?");
    const run = await client.beta.threads.runs.createAndPoll(thread.id, {
      assistant_id: assistant.id,
    });
    const messages = await client.beta.threads.messages.list(thread.id, { order: "asc" });
    return {
      run_id: run.id,
      thread_id: thread.id,
      status: run.status,
      instructions: run.instructions,
      usage: run.usage,
      messages: messages.data.map((m) => ({ role: m.role, text: text(m), run_id: m.run_id })),
    };
  },

  // runs.stream with the `textDelta` event, then finalRun() and finalMessages().
  async stream() {
    const { assistant, thread } = await setup("Tell me what a penguin is.");
    const events = [];
    const deltas = [];
    const done = [];
    let snapshot = null;
    let created = 0;
    const stream = client.beta.threads.runs
      .stream(thread.id, { assistant_id: assistant.id })
      .on("event", (event) => events.push(event.event))
      .on("textCreated", () => {
        created += 1;
      })
      .on("textDelta", (delta, textSnapshot) => {
        deltas.push(delta.value);
        snapshot = textSnapshot.value;
      })
      .on("messageDone", (message) => done.push(message));
    const run = await stream.finalRun();
    // The SDK's own snapshots (it keeps their `in_progress` status; `messageDone` has the final).
    const finalMessages = await stream.finalMessages();
    assert.equal(snapshot, deltas.join(""));
    return {
      run_id: run.id,
      thread_id: thread.id,
      status: run.status,
      events,
      deltas,
      text_created: created,
      final_messages: finalMessages.map((m) => ({ id: m.id, text: text(m) })),
      messages_done: done.map((m) => ({ id: m.id, status: m.status, text: text(m) })),
    };
  },

  // A function call: the stream ends in `requires_action`, the outputs go back through
  // submitToolOutputsStream, and that second stream carries the answer.
  async "tool-outputs"() {
    const { assistant, thread } = await setup("What is the weather in Oslo?", {
      tools: [
        {
          type: "function",
          function: {
            name: "get_forecast",
            description: "The weather in a city.",
            parameters: {
              type: "object",
              properties: { city: { type: "string" } },
              required: ["city"],
            },
          },
        },
      ],
    });
    const firstEvents = [];
    const first = client.beta.threads.runs
      .stream(thread.id, { assistant_id: assistant.id })
      .on("event", (event) => firstEvents.push(event.event));
    const waiting = await first.finalRun();
    assert.equal(waiting.status, "requires_action");
    const calls = waiting.required_action.submit_tool_outputs.tool_calls;
    const outputs = calls.map((call) => {
      const { city } = JSON.parse(call.function.arguments);
      return { tool_call_id: call.id, output: JSON.stringify({ city, celsius: 12 }) };
    });
    const deltas = [];
    const events = [];
    const second = client.beta.threads.runs
      .submitToolOutputsStream(thread.id, waiting.id, { tool_outputs: outputs })
      .on("event", (event) => events.push(event.event))
      .on("textDelta", (delta) => deltas.push(delta.value));
    const run = await second.finalRun();
    const steps = await client.beta.threads.runs.steps.list(thread.id, run.id, { order: "asc" });
    return {
      run_id: run.id,
      thread_id: thread.id,
      waiting_status: waiting.status,
      first_events: firstEvents,
      tool_calls: calls.map((c) => ({
        id: c.id,
        name: c.function.name,
        arguments: c.function.arguments,
      })),
      outputs,
      status: run.status,
      events,
      text: deltas.join(""),
      steps: steps.data.map((s) => s.step_details.type),
    };
  },

  // `for await` over lists longer than one page: the SDK follows the `after` cursors.
  async pagination() {
    const thread = await client.beta.threads.create();
    const created = [];
    for (let i = 0; i < 7; i += 1) {
      const message = await client.beta.threads.messages.create(thread.id, {
        role: "user",
        content: `message ${i}`,
      });
      created.push(message.id);
    }
    const firstPage = await client.beta.threads.messages.list(thread.id, {
      limit: 3,
      order: "asc",
    });
    const ascending = [];
    for await (const message of client.beta.threads.messages.list(thread.id, {
      limit: 3,
      order: "asc",
    })) {
      ascending.push(message.id);
    }
    const descending = [];
    for await (const message of client.beta.threads.messages.list(thread.id, { limit: 2 })) {
      descending.push(message.id);
    }
    let pages = 0;
    const newest = await client.beta.threads.messages.list(thread.id, { limit: 3 });
    for await (const page of newest.iterPages()) {
      pages += 1;
      assert.ok(page.data.length <= 3);
    }
    return {
      thread_id: thread.id,
      created,
      first_page: firstPage.data.map((m) => m.id),
      first_page_has_more: firstPage.hasNextPage(),
      ascending,
      descending,
      pages,
    };
  },

  // The SDK's error classes, from the server's OpenAI-shaped errors.
  async errors() {
    const seen = {};
    const record = (name, error) => {
      assert.ok(error instanceof APIError, `${name}: ${error}`);
      seen[name] = {
        class: error.constructor.name,
        status: error.status,
        message: error.error?.message ?? null,
        type: error.type ?? null,
        param: error.param ?? null,
        code: error.code ?? null,
      };
    };
    try {
      await client.beta.threads.retrieve("thread_missing");
      assert.fail("a missing thread was found");
    } catch (error) {
      assert.ok(error instanceof NotFoundError);
      record("missing_thread", error);
    }
    const thread = await client.beta.threads.create();
    try {
      await client.beta.threads.runs.createAndPoll(thread.id, { assistant_id: "asst_missing" });
      assert.fail("a run started with a missing assistant");
    } catch (error) {
      assert.ok(error instanceof NotFoundError);
      record("missing_assistant", error);
    }
    try {
      await client.beta.threads.messages.create(thread.id, { role: "system", content: "x" });
      assert.fail("a system message was accepted");
    } catch (error) {
      assert.ok(error instanceof BadRequestError);
      record("bad_role", error);
    }
    const stranger = new OpenAI({ apiKey: "sk-not-a-key", maxRetries: 0 });
    try {
      await stranger.beta.assistants.list();
      assert.fail("an unknown key was accepted");
    } catch (error) {
      assert.ok(error instanceof AuthenticationError);
      record("bad_key", error);
    }
    return { thread_id: thread.id, errors: seen };
  },
};

const name = process.argv[2];
if (!(name in scenarios)) {
  console.error(`usage: node scenarios.mjs <${Object.keys(scenarios).join("|")}>`);
  process.exit(2);
}
const result = await scenarios[name]();
console.log(JSON.stringify(result));
