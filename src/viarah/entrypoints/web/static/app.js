// ViaRah notifications page: registers the service worker and turns Web Push on or off
// for this browser. Talks to the API with the session cookie (same origin); unsafe
// requests carry the X-CSRF-Token header read from the viarah_csrf cookie.
"use strict";

// data-state of #push-state → the sentence shown.
const STATES = {
  checking: "Checking…",
  working: "Working…",
  unsupported: "Unsupported: this browser cannot receive push notifications.",
  "logged-out": "Not logged in: log in to turn notifications on or off for this browser.",
  "not-configured":
    "Push not configured on the server: the operator must set WEBPUSH_VAPID_PUBLIC_KEY, " +
    "WEBPUSH_VAPID_PRIVATE_KEY and WEBPUSH_VAPID_SUBJECT.",
  denied:
    "Permission denied: notifications are blocked for this site. Allow them in the " +
    "browser's site settings, then reload this page.",
  "not-subscribed": "Not subscribed: this browser does not receive your notifications.",
  subscribed: "Subscribed: this browser receives your notifications.",
  error: "Error:",
};
const SUBSCRIBE_TIMEOUT_MS = 30000;

let csrfFromLogin = "";

const byId = (id) => document.getElementById(id);

function show(state, detail) {
  const element = byId("push-state");
  element.dataset.state = state;
  element.textContent = detail ? `${STATES[state]} ${detail}` : STATES[state];
  byId("enable").hidden = !(state === "not-subscribed" || state === "error");
  byId("disable").hidden = state !== "subscribed";
}

function showSession(email) {
  byId("login").hidden = Boolean(email);
  byId("account").hidden = !email;
  byId("account-email").textContent = email || "";
}

function csrfToken() {
  const prefix = "viarah_csrf=";
  const cookie = document.cookie.split("; ").find((c) => c.startsWith(prefix));
  return cookie ? decodeURIComponent(cookie.slice(prefix.length)) : csrfFromLogin;
}

class ApiError extends Error {}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  if (response.status !== 204) {
    try {
      data = await response.json();
    } catch {
      data = null;
    }
  }
  return { status: response.status, ok: response.ok, headers: response.headers, data };
}

function apiError(result) {
  const why = result.data && result.data.error ? result.data.error : `HTTP ${result.status}`;
  return new ApiError(`the server answered: ${why}`);
}

function base64UrlToBytes(text) {
  const padded = (text + "===".slice((text.length + 3) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function sameKey(buffer, bytes) {
  if (!buffer) return false;
  const have = new Uint8Array(buffer);
  return have.length === bytes.length && have.every((b, i) => b === bytes[i]);
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

async function serverSubscription(endpoint) {
  const listed = await api("GET", "/api/push/subscriptions");
  if (!listed.ok) throw apiError(listed);
  return listed.data.subscriptions.find((s) => s.endpoint === endpoint) || null;
}

async function vapidKey() {
  const answer = await api("GET", "/api/push/vapid_public_key");
  if (answer.status === 503) return null;
  if (!answer.ok) throw apiError(answer);
  return answer.data.public_key;
}

// The current state, from the browser and the server.
async function refresh() {
  if (!window.isSecureContext) {
    return show("unsupported", "Push needs HTTPS (or http://localhost).");
  }
  if (!pushSupported()) return show("unsupported");
  const registration = await navigator.serviceWorker.register("/service-worker.js", {
    scope: "/",
    updateViaCache: "none",
  });
  const me = await api("GET", "/api/me");
  if (me.status === 401) {
    showSession(null);
    return show("logged-out");
  }
  if (!me.ok) throw apiError(me);
  showSession(me.data.user.email);
  const key = await vapidKey();
  if (key === null) return show("not-configured");
  if (Notification.permission === "denied") return show("denied");
  const subscription = await registration.pushManager.getSubscription();
  if (
    subscription &&
    Notification.permission === "granted" &&
    sameKey(subscription.options.applicationServerKey, base64UrlToBytes(key)) &&
    (await serverSubscription(subscription.endpoint))
  ) {
    return show("subscribed");
  }
  return show("not-subscribed");
}

async function enable() {
  show("working");
  const permission = await Notification.requestPermission();
  if (permission === "denied") return show("denied");
  if (permission !== "granted") {
    return show("not-subscribed", "Notifications were not allowed; press Enable to ask again.");
  }
  const key = await vapidKey();
  if (key === null) return show("not-configured");
  const applicationServerKey = base64UrlToBytes(key);
  const registration = await navigator.serviceWorker.ready;
  let subscription = await registration.pushManager.getSubscription();
  if (subscription && !sameKey(subscription.options.applicationServerKey, applicationServerKey)) {
    await subscription.unsubscribe(); // made with an older server key
    subscription = null;
  }
  if (!subscription) {
    try {
      subscription = await withTimeout(
        registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey }),
        SUBSCRIBE_TIMEOUT_MS,
        "the browser's push service",
      );
    } catch (error) {
      return show(
        "error",
        `the browser's push service did not give a subscription (${error.name}: ${error.message}).`,
      );
    }
  }
  const saved = await api("POST", "/api/push/subscriptions", {
    subscription: subscription.toJSON(),
    user_agent: navigator.userAgent,
  });
  if (!saved.ok) {
    await subscription.unsubscribe().catch(() => undefined);
    if (saved.status === 401) return refresh();
    throw apiError(saved);
  }
  return show("subscribed");
}

// Removes this browser's subscription from the server, then from the browser.
async function forgetThisBrowser() {
  const registration = await navigator.serviceWorker.getRegistration("/");
  const subscription = registration ? await registration.pushManager.getSubscription() : null;
  if (!subscription) return;
  const known = await serverSubscription(subscription.endpoint);
  if (known) {
    const removed = await api("DELETE", `/api/push/subscriptions/${encodeURIComponent(known.id)}`);
    if (!removed.ok && removed.status !== 404) throw apiError(removed);
  }
  await subscription.unsubscribe();
}

async function disable() {
  show("working");
  await forgetThisBrowser();
  return show("not-subscribed");
}

async function login(event) {
  event.preventDefault();
  const problem = byId("login-error");
  problem.hidden = true;
  const answer = await api("POST", "/api/auth/login", {
    email: byId("login-email").value,
    password: byId("login-password").value,
  });
  if (!answer.ok) {
    problem.textContent = answer.data && answer.data.error ? answer.data.error : "Login failed.";
    problem.hidden = false;
    return;
  }
  csrfFromLogin = answer.headers.get("X-CSRF-Token") || "";
  byId("login-password").value = "";
  await refresh();
}

// Logging out also turns this browser's notifications off: on a shared computer the next
// person must not receive them. Best effort: the logout happens anyway.
async function logout() {
  if (pushSupported()) await forgetThisBrowser().catch(() => undefined);
  const answer = await api("POST", "/api/auth/logout");
  if (!answer.ok && answer.status !== 401) throw apiError(answer);
  csrfFromLogin = "";
  await refresh();
}

// Runs one user action; any failure ends in the "error" state with its reason.
function action(handler) {
  return async (event) => {
    const buttons = document.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      await handler(event);
    } catch (error) {
      show("error", error instanceof ApiError ? `${error.message}.` : `${error.name}: ${error.message}`);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  };
}

document.addEventListener("DOMContentLoaded", () => {
  byId("enable").addEventListener("click", action(enable));
  byId("disable").addEventListener("click", action(disable));
  byId("logout").addEventListener("click", action(logout));
  byId("login-form").addEventListener("submit", action(login));
  action(refresh)();
});
