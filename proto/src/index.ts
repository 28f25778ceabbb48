export * from "./gen/plugwire/v1/types_pb.js";
export * from "./gen/plugwire/v1/plugin_pb.js";
export * from "./gen/plugwire/v1/host_pb.js";
export * as health from "./gen/grpc/health/v1/health_pb.js";
export * from "./wire.js";
export * from "./token.js";
export * from "./errors.js";
export * from "./limits.js";
export * from "./grpc.js";
export * from "./remote.js";
export * as admin from "./gen/plugwire/admin/v1/admin_pb.js";
export {
  MAX_EFFECTS_PER_ACK,
  MAX_OUTCOMES_PER_ACK,
  decodeDeliverRequest,
  decodeDeliverResponse,
  effectCount,
  encodeDeliverRequest,
  encodeDeliverResponse,
  encodeRawDeliveryItems,
  preEncodedDeliverRequest,
  type RawDeliveryItem,
} from "./codec.js";
