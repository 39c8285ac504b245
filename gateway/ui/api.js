// The public REST API of the gateway this page came from, with the token of this tab.
//
// The token arrives in the URL's fragment (`fenlei ui` opens /ui/#token=...; a fragment is
// never sent to a server) or is pasted into the sign-in box; it is kept in sessionStorage
// (this tab only, gone when it closes) and sent only as `authorization: Bearer`.

const TOKEN_KEY = "fenlei.token";
const ROLES = ["viewer", "trainer", "admin"];

export class ApiError extends Error {
  // status: the HTTP status (0: the gateway could not be reached); code: the gRPC code.
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Moves a token from the fragment into sessionStorage and takes it out of the address bar
// and the history at once.
export function takeTokenFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  history.replaceState(null, "", location.pathname + location.search);
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token.trim());
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

// What the token says of its holder (unverified: the gateway checks it, this only shows it).
export function claims() {
  const parts = token().split(".");
  if (parts.length !== 3) return null;
  try {
    const json = atob(parts[1].replace(/-/g, "+").replace(/_/g, "/"));
    const payload = JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
    return { subject: payload.sub || "", role: payload.role || "", expires: payload.exp ? new Date(payload.exp * 1000) : null };
  } catch {
    return null;
  }
}

// True when the signed-in role may do what `needed` may.
export function mayAct(needed) {
  const held = claims();
  return Boolean(held) && ROLES.indexOf(held.role) >= ROLES.indexOf(needed);
}

async function send(path, { method = "GET", body, signal } = {}) {
  const headers = { accept: "application/json" };
  if (token()) headers.authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, 14, String(error.message || error));
  }
  if (!response.ok) {
    // The gateway answers every error as {"code", "message"}.
    const text = await response.text();
    let answer = {};
    try {
      answer = JSON.parse(text);
    } catch {
      answer = { message: text || response.statusText };
    }
    throw new ApiError(response.status, answer.code ?? 2, answer.message || response.statusText);
  }
  return response;
}

export async function call(path, options = {}) {
  const response = await send(path, options);
  return response.json();
}

// A server stream: onMessage(message) for each line of newline-delimited JSON as it
// arrives; resolves when the stream ends.
export async function stream(path, onMessage, { signal } = {}) {
  const response = await send(path, { signal });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += value;
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines) if (line.trim()) onMessage(JSON.parse(line));
  }
  if (pending.trim()) onMessage(JSON.parse(pending));
}

export const path = (strings, ...values) => strings.reduce((built, part, i) => built + encodeURIComponent(values[i - 1]) + part);
