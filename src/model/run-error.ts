/**
 * The model failed at run time on the inputs it was given (a Reshape to an impossible shape, a Pad
 * that needs a longer axis): the model's fault or its inputs', not mlops'. Gates count it as a failure
 * (exit 1), never as an internal error.
 */
export class ModelRunError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ModelRunError';
  }
}

const MAX_CAUSE = 300;

/**
 * ONNX Runtime's message cut to its cause: the node and what went wrong, without the source file,
 * the C++ signature and the failed assertion. "Non-zero status code returned while running Reshape
 * node. Name:'r' Status Message: /src/reshape_helper.h:39 onnxruntime::ReshapeHelper::ReshapeHelper(...)
 * size == n was false. The input tensor cannot be reshaped..." becomes "Reshape node 'r': The input
 * tensor cannot be reshaped...".
 */
export function ortCause(message: string): string {
  let text = message.replace(/\s+/g, ' ').trim();
  const node = /running (\S+) node\. Name:'([^']*)' Status Message: (.*)$/.exec(text);
  let where = '';
  if (node) {
    where = `${node[1]} node${node[2] ? ` '${node[2]}'` : ''}: `;
    text = node[3];
  }
  // "/path/file.h:39 onnxruntime::F(args) cond was false. Reason" -> "Reason"
  const failed = / was false\. (.+)$/.exec(text);
  if (failed) text = failed[1];
  else text = text.replace(/^\S+\.(?:h|cc|cpp|hpp):\d+ /, '').replace(/^[\w:~<>]+\([^)]*\)\s*/, '');
  const cause = `${where}${text}`.trim();
  return cause.length > MAX_CAUSE ? `${cause.slice(0, MAX_CAUSE - 1)}…` : cause;
}
