/**
 * Publish-subscribe over shared memory, as the `shm` namespace offers it: `shm.publisher(name, options)` and
 * `shm.subscriber(name, options)` (see `shm/pubsub.ts` for the behaviour, `shm/pubsub_layout.ts` for the layout and
 * docs/shm_pubsub.md for the guide).
 *
 * @module
 */
export {
  type Policy,
  Publisher,
  publisher,
  type PublisherOptions,
  type PubSubHandle,
  Subscriber,
  subscriber,
  type SubscriberOptions,
} from "../shm/pubsub.ts";
export { LaggedError } from "../errors.ts";
