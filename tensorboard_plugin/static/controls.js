// Toolbar: run / comparison run / metric selectors, layer filter, zoom reset
// and the view's download as CSV or JSON. Every control is a labelled form
// control or a button, so the keyboard reaches it with Tab.

function field(labelText, control) {
  const label = document.createElement('label');
  label.className = 'gw-field';
  const span = document.createElement('span');
  span.className = 'gw-field-label';
  span.textContent = labelText;
  label.append(span, control);
  return label;
}

/** Replaces a select's options only when the list changed; keeps `selected`. */
function syncOptions(select, items, selected) {
  const key = JSON.stringify(items.map((it) => [it.value, it.text, it.title || '']));
  if (select.dataset.key !== key) {
    select.dataset.key = key;
    select.replaceChildren(...items.map((it) => {
      const option = new Option(it.text, it.value);
      if (it.title) option.title = it.title;
      return option;
    }));
  }
  select.value = selected;
}

export class Controls {
  /**
   * @param {object} on handlers: run(name), compare(name), metric(name), filter(text), resetZoom(),
   *   download(format: 'csv' | 'json')
   */
  constructor(parent, on) {
    this.el = document.createElement('header');
    this.el.className = 'gw-toolbar';

    this.run = document.createElement('select');
    this.run.id = 'gw-run';
    this.run.addEventListener('change', () => on.run(this.run.value));

    this.run2 = document.createElement('select');
    this.run2.id = 'gw-run2';
    this.run2.addEventListener('change', () => on.compare(this.run2.value));

    this.metric = document.createElement('select');
    this.metric.id = 'gw-metric';
    this.metric.addEventListener('change', () => on.metric(this.metric.value));

    this.filter = document.createElement('input');
    this.filter.id = 'gw-filter';
    this.filter.type = 'search';
    this.filter.placeholder = 'Filter layers (substring)';
    this.filter.autocomplete = 'off';
    this.filter.spellcheck = false;
    this.filter.addEventListener('input', () => on.filter(this.filter.value));

    this.reset = document.createElement('button');
    this.reset.id = 'gw-reset-zoom';
    this.reset.type = 'button';
    this.reset.textContent = 'Reset zoom';
    this.reset.title = 'Show all steps (drag across a heatmap to zoom in)';
    this.reset.disabled = true;
    this.reset.addEventListener('click', () => on.resetZoom());

    this.downloads = ['csv', 'json'].map((format) => {
      const button = document.createElement('button');
      button.id = `gw-download-${format}`;
      button.type = 'button';
      button.textContent = `Download ${format.toUpperCase()}`;
      button.title = `Save the values of the heatmaps shown (runs, zoomed steps, filtered layers) as ${format.toUpperCase()}`;
      button.addEventListener('click', () => on.download(format));
      return button;
    });

    const brand = document.createElement('span');
    brand.className = 'gw-brand';
    brand.textContent = 'GradWatch';

    this.el.append(
      brand,
      field('Run', this.run),
      field('Compare with', this.run2),
      field('Metric', this.metric),
      field('Layers', this.filter),
      this.reset,
      ...this.downloads,
    );
    parent.appendChild(this.el);
  }

  setRuns(names, run, run2) {
    syncOptions(this.run, names.map((n) => ({ value: n, text: n })), run);
    syncOptions(this.run2, [{ value: '', text: '(none)' }, ...names.map((n) => ({ value: n, text: n }))], run2);
  }

  /** @param {Array<{name: string, label: string, description: string}>} metrics */
  setMetrics(metrics, selected) {
    syncOptions(this.metric, metrics.map((m) => ({ value: m.name, text: m.label, title: m.description })), selected);
  }

  setEnabled(enabled) {
    for (const c of [this.run, this.run2, this.metric, this.filter, ...this.downloads]) c.disabled = !enabled;
  }

  setZoomed(zoomed) {
    this.reset.disabled = !zoomed;
  }
}
