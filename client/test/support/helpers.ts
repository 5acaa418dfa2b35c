import assert from "node:assert/strict";

import { CombinedGraphQLErrors, type ApolloClient, type TypedDocumentNode } from "@apollo/client";

/** The `extensions.code` of each top-level error of a result. */
export function errorCodes(error: unknown): unknown[] {
  assert.ok(CombinedGraphQLErrors.is(error), `expected GraphQL errors, got ${String(error)}`);
  return error.errors.map((e) => e.extensions?.code);
}

/** Narrows a typed mutation payload (`X | OperationInfo`) to the member a test expects. */
export function as<T extends { __typename: string }, N extends T["__typename"]>(
  payload: T | null | undefined,
  typename: N,
): Extract<T, { __typename: N }> {
  assert.ok(payload, "no payload");
  assert.equal(payload.__typename, typename, `expected ${typename}, got ${JSON.stringify(payload)}`);
  return payload as Extract<T, { __typename: N }>;
}

/** Subscribes and collects results until `until` says the last one ends the stream. */
export function collect<TData, TVars extends Record<string, unknown>>(
  client: ApolloClient,
  query: TypedDocumentNode<TData, TVars>,
  variables: TVars,
  until: (data: TData) => boolean,
  timeoutMs = 120_000,
): { done: Promise<TData[]>; received: TData[] } {
  const received: TData[] = [];
  const done = new Promise<TData[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      subscription.unsubscribe();
      reject(new Error(`timed out after ${received.length} events: ${JSON.stringify(received.slice(-3))}`));
    }, timeoutMs);
    const subscription = client.subscribe({ query, variables }).subscribe({
      next(result) {
        if (result.error) {
          clearTimeout(timer);
          subscription.unsubscribe();
          reject(result.error);
          return;
        }
        const data = result.data as TData;
        received.push(data);
        if (until(data)) {
          clearTimeout(timer);
          subscription.unsubscribe();
          resolve(received);
        }
      },
      error(error) {
        clearTimeout(timer);
        reject(error);
      },
      complete() {
        clearTimeout(timer);
        resolve(received);
      },
    });
  });
  return { done, received };
}

export const sleep = (ms: number) => new Promise((wake) => setTimeout(wake, ms));
