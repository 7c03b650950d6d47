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
  return (method, call) => new AdmittedCall(options, method.path, call).intercepting;
}

/**
 * One call through admission: its token and client checked when its metadata arrives, its message's
 * bytes counted against the body budget as they arrive, its request's memory reserved once it is whole,
 * and everything it held given back when it ends, is refused or is cancelled.
 */
class AdmittedCall {
  readonly intercepting: grpc.ServerInterceptingCall;
  private readonly rpc: string;
  private readonly open: boolean;
  /**
   * grpc-js's own call under the interceptors holds the HTTP/2 stream: it is read here to count the
   * message's bytes as they arrive and to reset a refused stream (grpc-js offers no hook for either).
   */
  private readonly stream: http2.ServerHttp2Stream | undefined;
  private client = '';
  private held = 0;
  private untrack: (() => void) | undefined;
  private ended = false;
  /** Gives back the memory the whole message reserved (server.memoryBudget) once the call ends. */
  private reserved: (() => void) | undefined;

  constructor(
    private readonly options: AdmissionOptions,
    path: string,
    private readonly call: grpc.ServerInterceptingCallInterface,
  ) {
    this.rpc = path.slice(path.lastIndexOf('/') + 1);
    this.open = !path.startsWith(`/${INFERENCE_SERVICE}/`) || OPEN_RPCS.has(this.rpc);
    this.stream = (call as unknown as { stream?: http2.ServerHttp2Stream }).stream;
    this.intercepting = new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next(
          new grpc.ServerListenerBuilder()
            .withOnReceiveMetadata(this.admit)
            .withOnReceiveMessage(this.received)
            .withOnCancel(() => {
              this.ended = true;
              this.release();
              this.reserved?.();
            })
            .build(),
        );
      },
      sendStatus: (status, next) => {
        this.ended = true;
        this.release();
        this.reserved?.();
        next(status);
      },
    });
  }

  private readonly release = () => {
    if (!this.untrack) return;
    this.untrack();
    this.untrack = undefined;
    this.options.limits.budget.give(this.held);
    this.held = 0;
  };

  private readonly refuse = (error: BadRequest) => {
    if (this.ended) return;
    this.ended = true;
    this.release();
    const code = GRPC_STATUS_FOR_HTTP[error.status] ?? grpc.status.INVALID_ARGUMENT;
    this.options.onRefused(this.rpc, code);
    this.intercepting.sendStatus({ code, details: error.message });
    // The answer first, then RST_STREAM: the client stops sending what would not be read.
    const stream = this.stream;
    setImmediate(() => {
      if (stream && !stream.destroyed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    });
  };

  private readonly count = (chunk: Buffer) => {
    if (this.ended || !this.untrack) return;
    if (!this.options.limits.budget.take(chunk.length, this.client)) return this.refuse(overBudget(this.options.limits));
    this.held += chunk.length;
  };

  private readonly admit = (metadata: grpc.Metadata, next: (metadata: grpc.Metadata) => void) => {
    const { access, proxies, limits } = this.options;
    const address = clientAddress(this.call, metadata, proxies);
    this.client = address;
    if (access && !this.open) {
      const given = metadata.get('authorization')[0];
      const token = bearerToken(typeof given === 'string' ? given : undefined);
      const verdict = access.verify(token, address);
      if (!verdict.ok) {
        const { error } = accessRefusal(verdict);
        if (verdict.delayMs > 0) setTimeout(() => this.refuse(error), verdict.delayMs);
        else this.refuse(error);
        return;
      }
      this.client = `t:${token}`;
    }
    if (this.stream) {
      this.untrack = limits.budget.track(this.refuse, () => this.held, this.client);
      this.stream.on('data', this.count);
    }
    next(metadata);
  };

  /** The whole message has arrived: it leaves the budget for bodies still arriving, and reserves its request's memory until the call ends. */
  private readonly received = (message: unknown, next: (message: unknown) => void) => {
    const size = this.held;
    this.release();
    try {
      this.reserved = this.options.limits.memory?.reserve(size);
    } catch (error) {
      return this.refuse(error as BadRequest);
    }
    next(message);
  };
}
