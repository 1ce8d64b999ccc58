// The e-shop API's documentation (/schema): Swagger UI, served by Ellity itself.
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // no call to swagger.io's validator
    presets: [SwaggerUIBundle.presets.apis],
  });
});
