// The single floating tooltip (#gw-tooltip). Content is always set as text.

export class Tooltip {
  constructor(parent) {
    this.el = document.createElement('div');
    this.el.id = 'gw-tooltip';
    this.el.className = 'gw-tooltip';
    this.el.setAttribute('role', 'tooltip');
    this.el.hidden = true;
    parent.appendChild(this.el);
  }

  /**
   * Shows the tooltip near (clientX, clientY).
   * @param {string} title first line, bold
   * @param {Array<[string, string]>} rows key/value lines
   */
  show(clientX, clientY, title, rows) {
    const frag = document.createDocumentFragment();
    const head = document.createElement('div');
    head.className = 'gw-tooltip-title';
    head.textContent = title;
    frag.appendChild(head);
    for (const [key, value] of rows) {
      const line = document.createElement('div');
      const k = document.createElement('span');
      k.className = 'gw-tooltip-key';
      k.textContent = `${key}: `;
      const v = document.createElement('span');
      v.className = 'gw-tooltip-value';
      v.textContent = value;
      line.append(k, v);
      frag.appendChild(line);
    }
    this.el.replaceChildren(frag);
    this.el.hidden = false;
    const pad = 14;
    const w = this.el.offsetWidth;
    const h = this.el.offsetHeight;
    let x = clientX + pad;
    let y = clientY + pad;
    if (x + w > window.innerWidth - 4) x = Math.max(4, clientX - pad - w);
    if (y + h > window.innerHeight - 4) y = Math.max(4, clientY - pad - h);
    this.el.style.left = `${x}px`;
    this.el.style.top = `${y}px`;
  }

  hide() {
    this.el.hidden = true;
  }
}
