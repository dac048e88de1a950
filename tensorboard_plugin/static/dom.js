// The DOM helper every module of the page shares.

/** A new element: `tag` with an optional class and text (always as text, never markup). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
