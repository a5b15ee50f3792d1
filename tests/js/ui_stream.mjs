#!/usr/bin/env node
// Checks a Vercel AI SDK "UI message stream" (protocol v1, SSE) with the real
// `ai` package as the client, the way `useChat` consumes it.
//
// The stream goes through the package's own `AbstractChat` (the class that
// `useChat` wraps) and `DefaultChatTransport`, whose `processResponseStream`
// runs `parseJsonEventStream` with `uiMessageChunkSchema` and fails on the
// first chunk the schema rejects; the chat then assembles the UIMessage with
// `processUIMessageStream`. Nothing here validates chunks itself: a chunk
// the SDK rejects makes the check fail, a chunk it accepts passes.
//
// Usage:
//   node ui_stream.mjs [--ai ai|ai5|ai6]
//       [--url URL [--body JSON] [--header 'K: V' ...] [--text TEXT]
//        [--chat-id ID]]
//       [--file PATH|-]
//       [--abort-after-chunks N]
//
// With --url the stream is fetched by POST. --body is sent as the request
// body verbatim; without it the body is the one useChat sends
// ({id, messages, trigger, messageId}) for one user message --text.
// With --file (or neither --url nor --file) the stream is read from the file
// ("-" or nothing: stdin).
// --abort-after-chunks N presses the stop button (`chat.stop()`, which aborts
// the fetch through its AbortController) once N chunks have been processed.
//
// Prints one JSON object on stdout:
//   ok            the SDK accepted every chunk it read and the HTTP status was
//                 2xx (an `error` chunk is valid protocol: see stream_error)
//   status        HTTP status (null for a file or when the fetch failed)
//   headers       response headers, lower-case names (empty for a file)
//   chunks        the chunks the SDK parsed and validated, in order
//   message       the assembled assistant UIMessage, as the chat holds it at
//                 the end, or null when none was written
//   error         why ok is false (null when ok)
//   error_name    the error's class name, e.g. TypeValidationError
//   stream_error  errorText of an `error` chunk (what useChat shows), or null
//   aborted       true when the turn ended through the stop button
//   chat_status   the chat's final status: ready or error
//   finish_reason finishReason of the `finish` chunk, or null
//   ai            {package, version}
// Exit code 0 whatever the verdict; 2 for usage errors.

import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import process from "node:process";

const PACKAGES = ["ai", "ai5", "ai6"];

const USAGE = `usage: node ui_stream.mjs [--ai ${PACKAGES.join("|")}]
    [--url URL [--body JSON] [--header 'K: V' ...] [--text TEXT] [--chat-id ID]]
    [--file PATH|-] [--abort-after-chunks N]`;

class UsageError extends Error {}

function parseArgs(argv) {
  const opts = {
    ai: "ai",
    url: null,
    body: undefined,
    headers: {},
    file: null,
    text: "Hello",
    chatId: null,
    abortAfterChunks: null,
  };
  const takesValue = new Set([
    "--ai",
    "--url",
    "--body",
    "--header",
    "--file",
    "--text",
    "--chat-id",
    "--abort-after-chunks",
  ]);
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq !== -1) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    if (arg === "-h" || arg === "--help") {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    if (!takesValue.has(arg)) throw new UsageError(`unknown argument: ${arg}`);
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a value`);
      value = argv[++i];
    }
    switch (arg) {
      case "--ai":
        if (!PACKAGES.includes(value)) {
          throw new UsageError(`--ai must be one of ${PACKAGES.join(", ")}`);
        }
        opts.ai = value;
        break;
      case "--url":
        opts.url = value;
        break;
      case "--body":
        try {
          opts.body = JSON.parse(value);
        } catch (err) {
          throw new UsageError(`--body is not JSON: ${err.message}`);
        }
        break;
      case "--header": {
        const colon = value.indexOf(":");
        if (colon <= 0) throw new UsageError(`--header wants 'Name: value'`);
        const name = value.slice(0, colon).trim();
        const headerValue = value.slice(colon + 1).trim();
        const key = Object.keys(opts.headers).find(
          (k) => k.toLowerCase() === name.toLowerCase(),
        );
        if (key !== undefined) {
          // Repeated headers are joined; cookies with "; " as browsers do.
          const sep = name.toLowerCase() === "cookie" ? "; " : ", ";
          opts.headers[key] = `${opts.headers[key]}${sep}${headerValue}`;
        } else {
          opts.headers[name] = headerValue;
        }
        break;
      }
      case "--file":
        opts.file = value;
        break;
      case "--text":
        opts.text = value;
        break;
      case "--chat-id":
        opts.chatId = value;
        break;
      case "--abort-after-chunks": {
        const n = Number(value);
        if (!Number.isInteger(n) || n < 0) {
          throw new UsageError("--abort-after-chunks wants an integer >= 0");
        }
        opts.abortAfterChunks = n;
        break;
      }
    }
  }
  if (opts.url !== null && opts.file !== null) {
    throw new UsageError("give --url or --file, not both");
  }
  if (opts.url === null) {
    for (const [flag, set] of [
      ["--body", opts.body !== undefined],
      ["--header", Object.keys(opts.headers).length > 0],
    ]) {
      if (set) throw new UsageError(`${flag} needs --url`);
    }
  }
  return opts;
}

async function readInput(file) {
  if (file !== null && file !== "-") return readFile(file);
  const parts = [];
  for await (const part of process.stdin) parts.push(part);
  return Buffer.concat(parts);
}

// The ChatState that a framework binding supplies (as @ai-sdk/react does),
// kept in plain fields.
class PlainChatState {
  constructor() {
    this.status = "ready";
    this.error = undefined;
    this.messages = [];
  }

  pushMessage(message) {
    this.messages = this.messages.concat(message);
  }

  popMessage() {
    this.messages = this.messages.slice(0, -1);
  }

  replaceMessage(index, message) {
    this.messages = [
      ...this.messages.slice(0, index),
      this.snapshot(message),
      ...this.messages.slice(index + 1),
    ];
  }

  snapshot(thing) {
    return structuredClone(thing);
  }
}

function errorText(err) {
  if (err == null) return null;
  if (err instanceof Error) return err.message || String(err);
  return typeof err === "string" ? err : JSON.stringify(err);
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`ui_stream.mjs: ${err.message}\n${USAGE}\n`);
      process.exit(2);
    }
    throw err;
  }

  const sdk = await import(opts.ai);
  const require = createRequire(import.meta.url);
  const sdkVersion = require(`${opts.ai}/package.json`).version;
  const { AbstractChat, DefaultChatTransport } = sdk;

  const result = {
    ok: false,
    status: null,
    headers: {},
    chunks: [],
    message: null,
    error: null,
    error_name: null,
    stream_error: null,
    aborted: false,
    chat_status: null,
    finish_reason: null,
    ai: { package: opts.ai, version: sdkVersion },
  };

  let input = null;
  if (opts.url === null) {
    try {
      input = await readInput(opts.file);
    } catch (err) {
      throw new UsageError(`cannot read ${opts.file}: ${err.message}`);
    }
  }

  // The fetch the transport uses: the real one for --url, a canned response
  // for a file. Either way it records what came back.
  const fetchImpl = async (url, init) => {
    if (opts.url === null) {
      init?.signal?.throwIfAborted();
      return new Response(input, {
        status: 200,
        headers: { "content-type": "text/event-stream" },
      });
    }
    const response = await globalThis.fetch(url, init);
    result.status = response.status;
    const headers = {};
    for (const [name, value] of response.headers) headers[name] = value;
    result.headers = headers;
    return response;
  };

  let chat;
  let stopPressed = false;

  // DefaultChatTransport as is; its validated chunk stream is only tapped to
  // record the chunks and to press stop after N of them.
  class RecordingTransport extends DefaultChatTransport {
    processResponseStream(stream) {
      return super.processResponseStream(stream).pipeThrough(
        new TransformStream({
          transform(chunk, controller) {
            result.chunks.push(chunk);
            controller.enqueue(chunk);
            if (
              opts.abortAfterChunks !== null &&
              !stopPressed &&
              result.chunks.length >= opts.abortAfterChunks
            ) {
              stopPressed = true;
              // Let the chat process this chunk (promise jobs only), then stop.
              setTimeout(() => void chat.stop(), 0);
            }
          },
        }),
      );
    }
  }

  const transportOptions = {
    api: opts.url ?? "http://ui-stream.invalid/api/chat",
    headers: opts.headers,
    fetch: fetchImpl,
  };
  if (opts.body !== undefined) {
    const body = opts.body;
    transportOptions.prepareSendMessagesRequest = () => ({ body });
  }

  let finish = null;
  class CheckChat extends AbstractChat {}
  chat = new CheckChat({
    ...(opts.chatId !== null ? { id: opts.chatId } : {}),
    state: new PlainChatState(),
    transport: new RecordingTransport(transportOptions),
    onFinish: (event) => {
      finish = event;
    },
  });

  if (opts.abortAfterChunks === 0) {
    stopPressed = true;
    setTimeout(() => void chat.stop(), 0);
  }

  await chat.sendMessage({ text: opts.text });
  // A stop pressed during the request resolves sendMessage; wait for it too.
  await chat.stop();

  const last = chat.messages[chat.messages.length - 1];
  result.message = last?.role === "assistant" ? last : null;
  result.chat_status = chat.status;
  result.aborted = Boolean(finish?.isAbort) || (stopPressed && !finish?.isError);
  const finishChunk = result.chunks.findLast((c) => c.type === "finish");
  result.finish_reason = finish?.finishReason ?? finishChunk?.finishReason ?? null;

  const err = chat.error;
  // The recorder runs ahead of the chat, so look for the matching chunk.
  const errorChunk = result.chunks.find(
    (c) => c.type === "error" && c.errorText === err?.message,
  );
  if (err == null) {
    result.ok = result.status === null || (result.status >= 200 && result.status < 300);
    if (!result.ok) result.error = `HTTP ${result.status}`;
  } else if (errorChunk !== undefined && err.constructor === Error) {
    // An `error` chunk: valid protocol, the turn failed; useChat shows it.
    result.ok = true;
    result.stream_error = errorChunk.errorText;
  } else {
    result.ok = false;
    result.error = errorText(err);
    result.error_name = err?.name ?? null;
    if (err?.cause != null && errorText(err.cause) !== result.error) {
      result.error += ` (cause: ${errorText(err.cause)})`;
    }
  }
  return result;
}

main().then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exitCode = 0;
  },
  (err) => {
    if (err instanceof UsageError) {
      process.stderr.write(`ui_stream.mjs: ${err.message}\n${USAGE}\n`);
      process.exitCode = 2;
      return;
    }
    // An unexpected failure of the checker itself still answers in JSON.
    process.stdout.write(
      `${JSON.stringify({
        ok: false,
        status: null,
        headers: {},
        chunks: [],
        message: null,
        error: `checker failed: ${err?.stack ?? err}`,
        error_name: err?.name ?? null,
        stream_error: null,
        aborted: false,
        chat_status: null,
        finish_reason: null,
      })}\n`,
    );
    process.exitCode = 0;
  },
);
