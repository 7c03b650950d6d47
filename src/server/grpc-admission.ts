/**
 * gRPC calls admitted from their metadata, before a byte of their message is read, under the same
 * rules as REST: the token (slow-down and lock-out included), the body budget shared with REST and
 * between clients, and the minimum rate. grpc-js reads a unary call's message only once the handler
 * has the metadata; holding the metadata back here keeps the stream paused, so a refused call costs
 * its headers and HTTP/2's window, never its message. Before, 200 idle streams without a token each
 * held 15 MB of a 16 MB message (3 GB), and 12 MB messages were decoded before the token was looked
 * at (issue 34).
 */
import * as grpc from '@grpc/grpc-js';
import http2 from 'node:http2';
import { INFERENCE_SERVICE } from '../protocol/grpc.js';
import type { BadRequest } from '../protocol/request.js';
import { accessRefusal, bearerToken, type AccessControl, type TrustedProxies } from './auth.js';
import { overBudget, type BodyLimits } from './body.js';

/** HTTP statuses the server's refusals carry, as gRPC codes: one list for both protocols. */
export const GRPC_STATUS_FOR_HTTP: Record<number, grpc.status> = {
  400: grpc.status.INVALID_ARGUMENT,
  401: grpc.status.UNAUTHENTICATED,
  403: grpc.status.PERMISSION_DENIED,
  404: grpc.status.NOT_FOUND,
  408: grpc.status.CANCELLED,
  409: grpc.status.FAILED_PRECONDITION,
  413: grpc.status.RESOURCE_EXHAUSTED,
  415: grpc.status.INVALID_ARGUMENT,
  429: grpc.status.RESOURCE_EXHAUSTED,
  503: grpc.status.UNAVAILABLE,
  504: grpc.status.DEADLINE_EXCEEDED,
};

/** Liveness and readiness answer without a token, as the REST probes do (grpc.health.v1 is a service of its own, open too). */
export const OPEN_RPCS = new Set(['ServerLive', 'ServerReady', 'ModelReady']);

export interface AdmissionOptions {
  access?: AccessControl;
  proxies: TrustedProxies;
  limits: BodyLimits;
  /** A call refused here, for the metrics: its method and gRPC code. */
  onRefused: (method: string, code: grpc.status) => void;
}

/** The address the call came from: the peer, or the client a trusted proxy names in the metadata. */
function clientAddress(call: grpc.ServerInterceptingCallInterface, metadata: grpc.Metadata, proxies: TrustedProxies): string {
  // The peer is "ipv4:127.0.0.1:5000" or "ipv6:[::1]:5000": the address without the port.
  const peer = call
    .getPeer()
    .replace(/^ipv[46]:/, '')
    .replace(/:\d+$/, '')
    .replace(/^\[|\]$/g, '');
  if (proxies.count === 0) return peer;
  const headers = metadata.getMap() as Record<string, string>;
  return proxies.clientOf(peer, headers);
}

export function admission(options: AdmissionOptions): grpc.ServerInterceptor {
  const { access, proxies, limits, onRefused } = options;
  return (method, call) => {
    const rpc = method.path.slice(method.path.lastIndexOf('/') + 1);
    const open = !method.path.startsWith(`/${INFERENCE_SERVICE}/`) || OPEN_RPCS.has(rpc);
    // grpc-js's own call under the interceptors holds the HTTP/2 stream: it is read here to count the
    // message's bytes as they arrive and to reset a refused stream (grpc-js offers no hook for either).
    const stream = (call as unknown as { stream?: http2.ServerHttp2Stream }).stream;
    let client = '';
    let held = 0;
    let untrack: (() => void) | undefined;
    let ended = false;
    /** Gives back the memory the whole message reserved (server.memoryBudget) once the call ends. */
    let reserved: (() => void) | undefined;
    const release = () => {
      if (!untrack) return;
      untrack();
      untrack = undefined;
      limits.budget.give(held);
      held = 0;
    };
    const refuse = (error: BadRequest) => {
      if (ended) return;
      ended = true;
      release();
      const code = GRPC_STATUS_FOR_HTTP[error.status] ?? grpc.status.INVALID_ARGUMENT;
      onRefused(rpc, code);
      intercepting.sendStatus({ code, details: error.message });
      // The answer first, then RST_STREAM: the client stops sending what would not be read.
      setImmediate(() => {
        if (stream && !stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
      });
    };
    const count = (chunk: Buffer) => {
      if (ended || !untrack) return;
      if (!limits.budget.take(chunk.length, client)) return refuse(overBudget(limits));
      held += chunk.length;
    };
    const admit = (metadata: grpc.Metadata, next: (metadata: grpc.Metadata) => void) => {
      const address = clientAddress(call, metadata, proxies);
      client = address;
      if (access && !open) {
        const given = metadata.get('authorization')[0];
        const token = bearerToken(typeof given === 'string' ? given : undefined);
        const verdict = access.verify(token, address);
        if (!verdict.ok) {
          const { error } = accessRefusal(verdict);
          if (verdict.delayMs > 0) setTimeout(() => refuse(error), verdict.delayMs);
          else refuse(error);
          return;
        }
        client = `t:${token}`;
      }
      if (stream) {
        untrack = limits.budget.track(refuse, () => held, client);
        stream.on('data', count);
      }
      next(metadata);
    };
    const intercepting: grpc.ServerInterceptingCall = new grpc.ServerInterceptingCall(call, {
      start(next) {
        next(
          new grpc.ServerListenerBuilder()
            .withOnReceiveMetadata(admit)
            .withOnReceiveMessage((message, next) => {
              // The whole message has arrived: it leaves the budget for bodies still arriving, and reserves its
              // request's memory until the call ends.
              const size = held;
              release();
              try {
                reserved = limits.memory?.reserve(size);
              } catch (error) {
                return refuse(error as BadRequest);
              }
              next(message);
            })
            .withOnCancel(() => {
              ended = true;
              release();
              reserved?.();
            })
            .build(),
        );
      },
      sendStatus(status, next) {
        ended = true;
        release();
        reserved?.();
        next(status);
      },
    });
    return intercepting;
  };
}
