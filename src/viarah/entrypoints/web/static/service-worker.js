// ViaRah service worker: shows each pushed message as a notification and opens its
// link when the notification is clicked. Payload (JSON): {title, body, url, event_type,
// org_id, task_id}.
"use strict";

self.addEventListener("install", () => self.skipWaiting());

self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

function text(value, fallback) {
  return typeof value === "string" && value ? value : fallback;
}

// Only http(s) targets; anything else (or nothing) opens the ViaRah page itself.
function safeUrl(raw) {
  try {
    const url = new URL(text(raw, "/"), self.location.origin);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : self.location.origin + "/";
  } catch {
    return self.location.origin + "/";
  }
}

self.addEventListener("push", (event) => {
  let data = {};
  if (event.data) {
    try {
      data = event.data.json() || {};
    } catch {
      data = { body: event.data.text() };
    }
  }
  const title = text(data.title, "ViaRah");
  const options = {
    body: text(data.body, ""),
    icon: "/icon.svg",
    data: {
      url: safeUrl(data.url),
      event_type: data.event_type || null,
      org_id: data.org_id || null,
      task_id: data.task_id || null,
    },
  };
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = safeUrl(event.notification.data && event.notification.data.url);
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const open = windows.find((client) => client.url === url && "focus" in client);
      if (open) return open.focus();
      return self.clients.openWindow ? self.clients.openWindow(url) : undefined;
    })(),
  );
});

// The push service replaced the subscription: store the new one for the logged-in user
// (best effort: needs the session and the CSRF cookie; the page's Enable does the same).
self.addEventListener("pushsubscriptionchange", (event) => {
  event.waitUntil(
    (async () => {
      const old = event.oldSubscription;
      const subscription =
        event.newSubscription ||
        (old ? await self.registration.pushManager.subscribe(old.options) : null);
      const csrf = self.cookieStore ? await self.cookieStore.get("viarah_csrf") : null;
      if (!subscription || !csrf) return;
      await fetch("/api/push/subscriptions", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf.value },
        body: JSON.stringify({ subscription: subscription.toJSON(), user_agent: navigator.userAgent }),
      });
    })().catch(() => undefined),
  );
});
